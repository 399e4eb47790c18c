package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

// A tree given away is found where it went (through a link), a link its
// new owner's deletion left dangling makes the layer be extracted again,
// and prune removes only dangling links.
func TestGiveTree(t *testing.T) {
	ctx := context.Background()
	l1, l2 := baseLayers(t)
	for _, dc := range availableDrivers(t) {
		if dc.name == "copy" {
			continue
		}
		t.Run(dc.name, func(t *testing.T) {
			root := t.TempDir()
			d, err := dc.open(root)
			mustDo(t, err)
			g, ok := d.(TreeGiver)
			if !ok {
				t.Fatalf("%s gives no trees", dc.name)
			}
			// Not extracted yet: nothing to give.
			if _, _, ok, err := g.GiveTree(ctx, l1.DiffID); ok || err != nil {
				t.Fatalf("gave a tree never extracted (%v)", err)
			}
			want := viewLines(t, d, l1, l2)
			m, err := d.Prepare(ctx, layersOf(l1))
			mustDo(t, err)
			mustDo(t, m.Release())
			dir, done, ok, err := g.GiveTree(ctx, l1.DiffID)
			if !ok || err != nil {
				t.Fatalf("no tree for an extracted layer (%v)", err)
			}
			elsewhere := filepath.Join(t.TempDir(), "moved")
			mustDo(t, os.Rename(dir, elsewhere))
			mustDo(t, done(elsewhere))
			if _, _, ok, _ := g.GiveTree(ctx, l1.DiffID); ok {
				t.Error("a tree given away was given again")
			}
			// The stack reads the moved tree.
			diffLines(t, "tree over the moved layer", want, viewLines(t, d, l1, l2))
			// Its new owner deletes it: the layer comes back from its tar.
			mustDo(t, os.RemoveAll(elsewhere))
			diffLines(t, "tree after the moved layer was deleted", want, viewLines(t, d, l1, l2))
			if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
				t.Errorf("layer not extracted again in place of the dangling link: %v", err)
			}
			// Prune drops a dangling link and leaves a live one alone.
			dir2, done2, ok, err := g.GiveTree(ctx, l2.DiffID)
			if !ok || err != nil {
				t.Fatalf("no tree for layer 2 (%v)", err)
			}
			live := filepath.Join(t.TempDir(), "live")
			mustDo(t, os.Rename(dir2, live))
			mustDo(t, done2(live))
			_, err = Prune(root, func(digest.Digest) bool { return true })
			mustDo(t, err)
			if _, err := os.Stat(dir2); err != nil {
				t.Errorf("prune removed a live link: %v", err)
			}
			mustDo(t, os.RemoveAll(live))
			_, err = Prune(root, nil)
			mustDo(t, err)
			if _, err := os.Lstat(dir2); !os.IsNotExist(err) {
				t.Errorf("prune kept a dangling link: %v", err)
			}
		})
	}
}

// viewLines is the merged tree of layers, read through a View.
func viewLines(t *testing.T, d Driver, ls ...memLayer) []string {
	t.Helper()
	root, release, err := d.View(context.Background(), layersOf(ls...))
	mustDo(t, err)
	defer release()
	return treeLines(t, root)
}
