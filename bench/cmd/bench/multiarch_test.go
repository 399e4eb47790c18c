package main

import (
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// list writes a two-platform index whose images differ in the given
// files (path → content by architecture).
func list(t *testing.T, files map[string]map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	images := map[string][]baseEntry{}
	for _, arch := range []string{"amd64", "arm64"} {
		ents := []baseEntry{dirE("app", 0o755), fileE("etc/passwd", "root:x:0:0::/root:/bin/sh\n")}
		for _, p := range slices.Sorted(maps.Keys(files)) {
			ents = append(ents, fileE(p, files[p][arch]))
		}
		images[arch] = ents
	}
	if err := writeIndexLayout(dir, "test", images); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestIndexLayout(t *testing.T) {
	dir := list(t, map[string]map[string]string{"arch": {"amd64": "x86_64\n", "arm64": "aarch64\n"}})
	got, err := layoutPlatforms(dir, "latest")
	if err != nil || !slices.Equal(got, []string{"linux/amd64", "linux/arm64"}) {
		t.Fatalf("layoutPlatforms: %v %v", got, err)
	}
	for p, want := range map[string]string{"linux/amd64": "x86_64\n", "linux/arm64": "aarch64\n"} {
		tr, err := mergedTreeFor(dir, "latest", p)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := tr["/arch"]; !ok {
			t.Errorf("%s: no /arch in %v", p, tr)
		}
		if c, err := fileIn(dir, p, "/arch"); err != nil || c != want {
			t.Errorf("%s: /arch = %q, %v; want %q", p, c, err, want)
		}
	}
	if _, err := mergedTreeFor(dir, "latest", "linux/s390x"); err == nil {
		t.Error("a platform the index lacks should be an error")
	}
}

func TestCheckMulti(t *testing.T) {
	c, _ := caseByName("multiarch")
	native := map[string]string{"amd64": "x86_64\n", "arm64": "x86_64\n"}
	emulated := map[string]string{"amd64": "x86_64\n", "arm64": "aarch64\n"}
	builder := list(t, map[string]map[string]string{"app/built-on": native, "arch": emulated})
	b := &bench{log: io.Discard}
	logf := func(string, ...any) {}
	for _, tc := range []struct {
		name    string
		buildah map[string]map[string]string
		excused []string
		fail    bool
	}{
		{"same", map[string]map[string]string{"app/built-on": native, "arch": emulated}, nil, false},
		{"cross-stage", map[string]map[string]string{"app/built-on": emulated, "arch": emulated}, []string{`linux/arm64 /app/built-on: builder "x86_64\n", buildah "aarch64\n"`}, false},
		// Outside the stage's output, or on the native platform too: a
		// real difference.
		{"outside", map[string]map[string]string{"app/built-on": native, "arch": native}, nil, true},
		{"native-too", map[string]map[string]string{"app/built-on": {"amd64": "i686\n", "arm64": "aarch64\n"}, "arch": emulated}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex, err := b.checkMulti(c, map[string]string{"builder": builder, "buildah": list(t, tc.buildah)}, logf)
			if (err != nil) != tc.fail {
				t.Fatalf("checkMulti: %v, want failure %v", err, tc.fail)
			}
			var got []string
			for _, e := range ex {
				got = append(got, e.String())
			}
			if !slices.Equal(got, tc.excused) {
				t.Errorf("excused %q, want %q", got, tc.excused)
			}
			for _, e := range ex {
				if !strings.Contains(e.Why, "$BUILDPLATFORM") {
					t.Errorf("why: %q", e.Why)
				}
			}
		})
	}
}
