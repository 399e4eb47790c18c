package snapshot

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Both resolvers (openat2 and the securejoin fallback for kernels before 5.6) keep lookups in the root.
func TestInRoot(t *testing.T) {
	t.Parallel()
	for _, useOpenat2 := range []bool{true, false} {
		name := map[bool]string{true: "openat2", false: "securejoin"}[useOpenat2]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			outer := t.TempDir()
			root := filepath.Join(outer, "root")
			mustDo(t, os.MkdirAll(filepath.Join(root, "real/sub"), 0o755))
			mustDo(t, os.Symlink("/", filepath.Join(root, "abs")))
			mustDo(t, os.Symlink("../../..", filepath.Join(root, "up")))
			mustDo(t, os.Symlink("real", filepath.Join(root, "rel")))
			mustDo(t, os.Symlink("nowhere", filepath.Join(root, "dangling")))
			mustDo(t, os.WriteFile(filepath.Join(root, "file"), nil, 0o644))
			ir, err := openInRoot(root)
			mustDo(t, err)
			defer ir.Close()
			if useOpenat2 && !ir.hasOpenat2 {
				t.Skip("kernel without openat2")
			}
			ir.hasOpenat2 = useOpenat2

			// Each path must resolve to the directory named by want, relative to root.
			for path, want := range map[string]string{"abs/real": "real", "up/real/sub": "real/sub", "rel/sub": "real/sub", "abs/up/rel": "real"} {
				fd, err := ir.dir(path, false)
				if err != nil {
					t.Errorf("dir(%q): %v", path, err)
					continue
				}
				var got, exp unix.Stat_t
				mustDo(t, unix.Fstat(fd, &got))
				mustDo(t, unix.Stat(filepath.Join(root, want), &exp))
				if got.Ino != exp.Ino {
					t.Errorf("dir(%q) is not %s", path, want)
				}
			}
			// Creation through symlinks lands inside.
			for _, path := range []string{"abs/new1/x", "up/new2", "rel/new3/y"} {
				if _, err := ir.dir(path, true); err != nil {
					t.Errorf("dir(%q, create): %v", path, err)
				}
			}
			for _, p := range []string{"new1/x", "new2", "real/new3/y"} {
				if fi, err := os.Stat(filepath.Join(root, p)); err != nil || !fi.IsDir() {
					t.Errorf("%s not created inside root: %v", p, err)
				}
			}
			if _, err := ir.dir("file/x", true); !errors.Is(err, unix.ENOTDIR) {
				t.Errorf("dir under a file: %v", err)
			}
			if _, err := ir.dir("dangling/x", true); err == nil {
				t.Error("dir through a dangling symlink succeeded")
			}
			names, _ := os.ReadDir(outer)
			if len(names) != 1 {
				t.Errorf("created outside the root: %v", names)
			}
		})
	}
}
