package build

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/image/v5/pkg/blobinfocache"
	"go.podman.io/image/v5/types"
)

func TestParseOutput(t *testing.T) {
	tests := []struct {
		in      string
		want    Output
		wantErr string
	}{
		{"type=oci,dest=out", Output{Type: "oci", Dest: "out"}, ""},
		{"type=oci,dest=out.tar", Output{Type: "oci", Dest: "out.tar"}, ""},
		{"type=docker-archive,dest=a.tar", Output{Type: "docker-archive", Dest: "a.tar"}, ""},
		{"type=docker,dest=a.tar", Output{Type: "docker-archive", Dest: "a.tar"}, ""},
		{"type=local,dest=/tmp/r", Output{Type: "local", Dest: "/tmp/r"}, ""},
		{"type=tar,dest=fs.tar", Output{Type: "tar", Dest: "fs.tar"}, ""},
		{"-", Output{Type: "tar", Dest: "-"}, ""},
		{"type=image,name=reg.example.com/a:1,push=true", Output{Type: "image", Name: "reg.example.com/a:1", Push: true}, ""},
		{"type=registry,name=reg.example.com/a:1", Output{Type: "image", Name: "reg.example.com/a:1", Push: true}, ""},
		{"rootfs-dir", Output{Type: "local", Dest: "rootfs-dir"}, ""},
		{"type=zip,dest=x", Output{}, "unknown type"},
		{"type=oci", Output{}, "dest= is required"},
		{"type=oci,dest=-", Output{}, "only type=tar"},
		{"type=image", Output{}, "name= is required"},
		{"type=oci,dest=x,compression=zstd", Output{}, "unknown key"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseOutput(tc.in)
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
			id, sec, err := ParseSecret(tc.in)
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
	got, err := ReadBuildArgs([]string{f}, []string{"B=flag", "C", "UNSET_ARG_XYZ"})
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

func TestParseCacheTo(t *testing.T) {
	for _, tc := range []struct {
		in, ref     string
		mounts, min bool
		err         string
	}{
		{"quay.io/team/cache", "quay.io/team/cache", false, false, ""},
		{"oci:/var/cache/x", "oci:/var/cache/x", false, false, ""},
		{"quay.io/team/cache,mounts=true", "quay.io/team/cache", true, false, ""},
		{"ref=quay.io/team/cache,mounts=false", "quay.io/team/cache", false, false, ""},
		{"type=registry,ref=quay.io/c,mode=max", "quay.io/c", false, false, ""},
		{"type=registry,ref=quay.io/c,mode=min,compression=zstd", "quay.io/c", false, true, ""},
		{"type=local,dest=/var/cache/b", "oci:/var/cache/b", false, false, ""},
		{"type=local,src=/x", "", false, false, "needs dest=DIR"},
		{"type=gha", "", false, false, "unknown type"},
		{"quay.io/c,mounts=yes", "", false, false, "want true or false"},
		{"quay.io/c,mode=all", "", false, false, "want min or max"},
		{"mounts=true", "", false, false, "no repository"},
	} {
		ref, mounts, min, err := ParseCacheTo(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || ref != tc.ref || mounts != tc.mounts || min != tc.min {
			t.Errorf("%q: %q %v %v %v", tc.in, ref, mounts, min, err)
		}
	}
	for in, want := range map[string]string{
		"quay.io/c": "quay.io/c", "type=registry,ref=quay.io/c": "quay.io/c", "type=local,src=/c": "oci:/c",
	} {
		if got, err := ParseCacheFrom(in); err != nil || got != want {
			t.Errorf("ParseCacheFrom(%q) = %q, %v", in, got, err)
		}
	}
}

// A store commit keeps containers/image's blob-info cache in memory (no
// SQLite file, no syncs); the rest of the system context is kept.
func TestCommitSysMemoryCache(t *testing.T) {
	sys := (&session{}).commitSys(&types.SystemContext{AuthFilePath: "/auth.json"})
	if sys.AuthFilePath != "/auth.json" {
		t.Errorf("AuthFilePath = %q: the caller's settings were dropped", sys.AuthFilePath)
	}
	c := blobinfocache.DefaultCache(sys)
	if got := fmt.Sprintf("%T", c); got != "*memory.cache" {
		t.Errorf("blob-info cache %s, want containers/image's memory-only one", got)
	}
}
