package snapshot

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestKernelOverlayDiff is the end-to-end check of the overlay conversion: change a kernel overlay,
// diff its upper dir, apply the diff to a copy of the lower dir, and compare with the merged view.
func TestKernelOverlayDiff(t *testing.T) {
	requireRoot(t, "mounting overlayfs outside a user namespace")
	for _, tt := range []struct{ name, prefix, opts string }{
		{"trusted", "trusted.overlay.", ",metacopy=off,redirect_dir=off,index=off"},
		// userxattr (the rootless setting) implies redirect_dir=nofollow and refuses other values.
		{"userxattr", "user.overlay.", ",userxattr,metacopy=off"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			lower, upper, work, merged := filepath.Join(base, "lower"), filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
			for _, d := range []string{upper, work, merged} {
				mustDo(t, os.MkdirAll(d, 0o755))
			}
			mustDo(t, os.MkdirAll(lower, 0o755))
			mustDo(t, apply(t, lower, makeTar(t,
				dir("etc/"), file("etc/a", "a"), file("etc/b", "b"), dir("var/"), dir("var/cache/"), file("var/cache/x", "x"),
				dir("var/cache/sub/"), file("var/cache/sub/y", "y"), file("rm-me", "r"), dir("rmdir/"), file("rmdir/f", "f"),
				file("becomes-dir", "f"), dir("becomes-file/"), file("becomes-file/g", "g")), ApplyOptions{}))
			opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work + tt.opts
			if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
				t.Fatalf("mount overlay (%s): %v", opts, err)
			}
			mounted := true
			defer func() {
				if mounted {
					unix.Unmount(merged, unix.MNT_DETACH)
				}
			}()
			m := func(rel string) string { return filepath.Join(merged, rel) }
			mustDo(t, os.Remove(m("etc/a")))
			mustDo(t, os.WriteFile(m("etc/c"), []byte("c"), 0o600))
			mustDo(t, os.Chmod(m("etc/b"), 0o640))
			mustDo(t, os.RemoveAll(m("var/cache")))
			mustDo(t, os.Mkdir(m("var/cache"), 0o700)) // opaque, existed below: marker
			mustDo(t, os.WriteFile(m("var/cache/z"), []byte("z"), 0o644))
			mustDo(t, os.Remove(m("rm-me")))
			mustDo(t, os.RemoveAll(m("rmdir")))
			mustDo(t, os.Remove(m("becomes-dir")))
			mustDo(t, os.Mkdir(m("becomes-dir"), 0o755)) // opaque, but a file below: no marker needed
			mustDo(t, os.RemoveAll(m("becomes-file")))
			mustDo(t, os.WriteFile(m("becomes-file"), []byte("now"), 0o644))
			mustDo(t, os.Mkdir(m("fresh"), 0o755))
			want := treeLines(t, merged)
			mustDo(t, unix.Unmount(merged, 0))
			mounted = false

			var layer bytes.Buffer
			lowerHasDir := func(rel string) bool {
				fi, err := os.Lstat(filepath.Join(lower, rel))
				return err == nil && fi.IsDir()
			}
			mustDo(t, WriteTar(context.Background(), &layer, upper, WriteOptions{
				Overlay: &OverlayOptions{XattrPrefix: tt.prefix, LowerHasDir: lowerHasDir}}))
			lines := tarLines(t, layer.Bytes())
			t.Logf("diff:\n%s", strings.Join(lines, "\n"))
			for _, l := range lines {
				if strings.Contains(l, "overlay") {
					t.Errorf("overlay xattr leaked: %s", l)
				}
				if strings.Contains(l, "becomes-dir/.wh..wh..opq") {
					t.Errorf("opaque marker for a directory new in this layer: %s", l)
				}
			}
			result := filepath.Join(base, "result")
			mustDo(t, CopyTree(context.Background(), lower, result, ApplyOptions{}))
			mustDo(t, apply(t, result, layer.Bytes(), ApplyOptions{}))
			diffLines(t, "lower + diff vs merged", want, treeLines(t, result))
		})
	}
}
