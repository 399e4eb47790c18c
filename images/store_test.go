package images

import (
	"os"
	"path/filepath"
	"testing"
)

// A build's store skips the overlay driver's idmapped-mount check (a
// process and mounts in a new store) when the store maps no ids; a value
// the user set is kept.
func TestNoIDMapCheck(t *testing.T) {
	for _, tc := range []struct {
		name, preset string
		noCheck      bool
		want         string
	}{
		{"build", "", true, "yes"},
		{"other commands", "", false, ""},
		{"user's value kept", "no", true, "no"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.preset != "" {
				t.Setenv(noIDMapEnv, tc.preset)
			} else {
				t.Setenv(noIDMapEnv, "")
				os.Unsetenv(noIDMapEnv)
			}
			dir := t.TempDir()
			s, err := OpenBackground(StoreOptions{Root: filepath.Join(dir, "root"), RunRoot: filepath.Join(dir, "run"), Driver: "vfs", NoIDMapCheck: tc.noCheck})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Wait(); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := os.Getenv(noIDMapEnv); got != tc.want {
				t.Errorf("%s = %q, want %q", noIDMapEnv, got, tc.want)
			}
		})
	}
}
