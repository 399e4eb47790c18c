package registry

import (
	"os"
	"path/filepath"
	"testing"

	"go.podman.io/image/v5/types"
)

func TestSkipUnreadableAuth(t *testing.T) {
	// Unreadable even for root, where the tests may run: a directory where
	// the file should be (EISDIR) and a file where a directory should be
	// (ENOTDIR). containers/image fails on both.
	tests := []struct {
		name   string
		setup  func(rt, home string)
		given  types.SystemContext
		want   string // "" : sys.AuthFilePath left alone
		noAuth bool   // want a path that does not exist
	}{
		{name: "all readable or absent", setup: func(rt, home string) {
			write(t, filepath.Join(home, ".docker", "config.json"), "{}")
		}},
		{name: "runtime auth a directory, docker config used", setup: func(rt, home string) {
			mkdir(t, filepath.Join(rt, "containers", "auth.json"))
			write(t, filepath.Join(home, ".docker", "config.json"), "{}")
		}, want: "HOME/.docker/config.json"},
		{name: "config dir a file, nothing readable", setup: func(rt, home string) {
			write(t, filepath.Join(home, ".config", "containers"), "x")
		}, noAuth: true},
		{name: "first readable wins over a later unreadable one", setup: func(rt, home string) {
			write(t, filepath.Join(rt, "containers", "auth.json"), "{}")
			mkdir(t, filepath.Join(home, ".docker", "config.json"))
		}, want: "RT/containers/auth.json"},
		{name: "named file untouched", setup: func(rt, home string) {
			mkdir(t, filepath.Join(rt, "containers", "auth.json"))
		}, given: types.SystemContext{AuthFilePath: "/named.json"}, want: "/named.json"},
		{name: "--creds untouched", setup: func(rt, home string) {
			mkdir(t, filepath.Join(rt, "containers", "auth.json"))
		}, given: types.SystemContext{DockerAuthConfig: &types.DockerAuthConfig{Username: "u"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, home := t.TempDir(), t.TempDir()
			t.Setenv("XDG_RUNTIME_DIR", rt)
			t.Setenv("HOME", home)
			t.Setenv("XDG_CONFIG_HOME", "")
			t.Setenv("DOCKER_CONFIG", "")
			tt.setup(rt, home)
			sys := tt.given
			SkipUnreadableAuth(&sys, nil)
			switch {
			case tt.noAuth:
				if sys.AuthFilePath == "" {
					t.Fatal("AuthFilePath not set")
				}
				if _, err := os.Stat(sys.AuthFilePath); !os.IsNotExist(err) {
					t.Fatalf("AuthFilePath %s: want a missing file, got %v", sys.AuthFilePath, err)
				}
			default:
				want := tt.want
				for k, v := range map[string]string{"RT": rt, "HOME": home} {
					if len(want) > len(k) && want[:len(k)+1] == k+"/" {
						want = v + want[len(k):]
					}
				}
				if sys.AuthFilePath != want {
					t.Fatalf("AuthFilePath = %q, want %q", sys.AuthFilePath, want)
				}
			}
		})
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	mkdir(t, filepath.Dir(path))
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o700); err != nil {
		t.Fatal(err)
	}
}
