package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/builder-dev/builder/platform"
)

func TestParseOutput(t *testing.T) {
	tests := []struct {
		in      string
		want    output
		wantErr string
	}{
		{"type=oci,dest=out", output{"oci", "out"}, ""},
		{"type=docker-archive,dest=a.tar", output{"docker-archive", "a.tar"}, ""},
		{"type=local,dest=/tmp/r", output{"local", "/tmp/r"}, ""},
		{"rootfs-dir", output{"local", "rootfs-dir"}, ""},
		{"type=zip,dest=x", output{}, "unknown type"},
		{"type=oci", output{}, "dest= is required"},
		{"type=oci,dest=x,compression=zstd", output{}, "unknown key"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseOutput(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v %v", got, err)
			}
		})
	}
}

func TestParsePlatform(t *testing.T) {
	for in, want := range map[string]platform.Platform{
		"linux/amd64":    {OS: "linux", Architecture: "amd64"},
		"linux/arm64/v8": {OS: "linux", Architecture: "arm64"},
	} {
		got, err := parsePlatform(in)
		if err != nil || got.OS != want.OS || got.Architecture != want.Architecture || got.Variant != want.Variant {
			t.Errorf("%s: got %+v %v", in, got, err)
		}
	}
	for _, bad := range []string{"linux", "/amd64", "a/b/c/d"} {
		if _, err := parsePlatform(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseSecret(t *testing.T) {
	f := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(f, []byte("x"), 0o600)
	t.Setenv("MY_TOKEN", "v")
	tests := []struct {
		in             string
		id, file, envv string
		wantErr        string
	}{
		{"id=a,src=" + f, "a", f, "", ""},
		{"src=" + f, "tok", f, "", ""},
		{"id=b,env=MY_TOKEN", "b", "", "MY_TOKEN", ""},
		{"id=MY_TOKEN", "MY_TOKEN", "", "MY_TOKEN", ""},
		{"id=c", "", "", "", "give src=FILE or env=VAR"},
		{"id=d,src=/no/such/file", "", "", "", "no such file"},
		{"id=e,bogus=1", "", "", "", "unknown key"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			id, sec, err := parseSecret(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || id != tc.id || sec.File != tc.file || sec.Env != tc.envv {
				t.Fatalf("got %q %+v %v", id, sec, err)
			}
		})
	}
}

func TestBuildArgs(t *testing.T) {
	f := filepath.Join(t.TempDir(), "args")
	os.WriteFile(f, []byte("# comment\nA=from-file\nB=file\nFROM_ENV\n"), 0o644)
	t.Setenv("FROM_ENV", "env-value")
	t.Setenv("C", "c-env")
	o := &budOptions{buildArgFiles: []string{f}, buildArgs: []string{"B=flag", "C", "UNSET_ARG_XYZ"}}
	got, err := o.collectBuildArgs()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"A": "from-file", "B": "flag", "C": "c-env", "FROM_ENV": "env-value"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}
