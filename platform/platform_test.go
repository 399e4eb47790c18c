package platform

import (
	"encoding/json"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestParse(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{"linux/amd64", "linux/amd64", ""},
		{"Linux/X86_64", "linux/amd64", ""},
		{"linux/x86-64", "linux/amd64", ""},
		{"linux/amd64/v1", "linux/amd64", ""},
		{"linux/amd64/v3", "linux/amd64/v3", ""},
		{"linux/aarch64", "linux/arm64", ""},
		{"linux/arm64/v8", "linux/arm64", ""},
		{"linux/arm64/8", "linux/arm64", ""},
		{"linux/arm64/v8.2", "linux/arm64/v8.2", ""},
		{"linux/arm", "linux/arm/v7", ""},
		{"linux/armhf", "linux/arm/v7", ""},
		{"linux/armel", "linux/arm/v6", ""},
		{"linux/armv7l", "linux/arm/v7", ""},
		{"linux/arm/6", "linux/arm/v6", ""},
		{"linux/i386", "linux/386", ""},
		{"macos/arm64", "darwin/arm64", ""},
		{"windows/amd64", "windows/amd64", ""},
		{" linux/s390x ", "linux/s390x", ""},
		{"linux/riscv64/rva22u64", "linux/riscv64/rva22u64", ""},
		{"linux", "", "want os/arch[/variant]"},
		{"linux/", "", "want os/arch[/variant]"},
		{"/amd64", "", "want os/arch[/variant]"},
		{"a/b/c/d", "", "want os/arch[/variant]"},
		{"linux/amd64,linux/arm64", "", "unknown architecture"},
		{"linus/amd64", "", `unknown operating system "linus"`},
		{"linux/amd46", "", `unknown architecture "amd46"`},
		{"linux/arm64/v99", "", `unknown variant "v99" of arm64`},
		{"linux/arm/v9", "", `unknown variant "v9" of arm`},
		{"linux/s390x/v2", "", "s390x has no variants"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			p, err := Parse(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Parse(%q) = %v, %v; want error %q", tc.in, p, err, tc.err)
				}
				return
			}
			if err != nil || p.String() != tc.want {
				t.Fatalf("Parse(%q) = %v, %v; want %s", tc.in, p, err, tc.want)
			}
			// Normal form is a fixed point.
			if q, err := Parse(p.String()); err != nil || q != p {
				t.Fatalf("Parse(%q) = %v, %v; not a fixed point", p, q, err)
			}
		})
	}
}

func TestParseList(t *testing.T) {
	tests := []struct {
		in   []string
		want string
		err  string
	}{
		{nil, "", ""},
		{[]string{"linux/amd64"}, "linux/amd64", ""},
		{[]string{"linux/amd64,linux/arm64"}, "linux/amd64 linux/arm64", ""},
		{[]string{"linux/amd64", "linux/arm64,linux/arm/v7"}, "linux/amd64 linux/arm64 linux/arm/v7", ""},
		{[]string{"linux/aarch64,linux/arm64/v8,linux/arm64"}, "linux/arm64", ""},
		{[]string{"linux/amd64,"}, "", "empty entry"},
		{[]string{"linux/amd64,windows/x"}, "", `unknown architecture "x"`},
	}
	for _, tc := range tests {
		got, err := ParseList(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseList(%q) = %v, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		if err != nil || strings.Join(s, " ") != tc.want {
			t.Errorf("ParseList(%q) = %q, %v; want %q", tc.in, s, err, tc.want)
		}
	}
}

func TestMatches(t *testing.T) {
	tests := []struct {
		want, have Platform
		ok         bool
	}{
		{Platform{OS: "linux", Architecture: "amd64"}, Platform{OS: "linux", Architecture: "amd64"}, true},
		{Platform{OS: "linux", Architecture: "arm64"}, Platform{OS: "linux", Architecture: "aarch64", Variant: "v8"}, true},
		{Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, Platform{OS: "linux", Architecture: "arm", Variant: "v6"}, false},
		{Platform{OS: "linux", Architecture: "amd64"}, Platform{OS: "linux", Architecture: "arm64"}, false},
		{Platform{OS: "linux", Architecture: "amd64"}, Platform{OS: "windows", Architecture: "amd64"}, false},
	}
	for _, tc := range tests {
		if got := tc.want.Matches(tc.have); got != tc.ok {
			t.Errorf("%v.Matches(%v) = %v", tc.want, tc.have, got)
		}
	}
}

// The JSON form is the image-spec's: cache keys made from steps that
// carry a platform keep their bytes.
func TestJSONLikeOCI(t *testing.T) {
	for _, p := range []Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm", Variant: "v7"}} {
		a, _ := json.Marshal(p)
		b, _ := json.Marshal(p.OCI())
		if string(a) != string(b) {
			t.Errorf("%s vs %s", a, b)
		}
		if FromOCI(ocispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}) != p {
			t.Errorf("FromOCI(%v) changed it", p)
		}
	}
}

func TestHost(t *testing.T) {
	h := Host()
	if err := h.validate(); err != nil {
		t.Fatalf("Host() = %v: %v", h, err)
	}
}
