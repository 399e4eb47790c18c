package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// A tree given away is found where it went (through a link), a link its
// new owner's deletion left dangling makes the layer be extracted again,
// and prune removes only dangling links.
func TestGiveTree(t *testing.T) {
	ctx := context.Background()
	l1, l2 := baseLayers(t)
	eachTreeDriver(t, func(t *testing.T, d Driver, root string) {
		g := d.(TreeGiver)
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

// viewLines is the merged tree of layers, read through a View.
func viewLines(t *testing.T, d Driver, ls ...memLayer) []string {
	t.Helper()
	root, release, err := d.View(context.Background(), layersOf(ls...))
	mustDo(t, err)
	defer release()
	return treeLines(t, root)
}

// A kept tar-split keeps its meta beside it (or none), is found with it,
// and goes with its tree when prune removes the tree.
func TestKeepSplit(t *testing.T) {
	ctx := context.Background()
	l1, l2 := baseLayers(t)
	eachTreeDriver(t, func(t *testing.T, d Driver, root string) {
		tf := d.(TreeFinder)
		m, err := d.Prepare(ctx, layersOf(l1, l2))
		mustDo(t, err)
		mustDo(t, m.Release())
		keep := func(l memLayer, meta *SplitMeta) {
			t.Helper()
			p := filepath.Join(t.TempDir(), "split")
			mustDo(t, os.WriteFile(p, []byte(l.DiffID.String()), 0o600))
			_, err := tf.KeepSplit(l.DiffID, p, meta)
			mustDo(t, err)
		}
		keep(l1, &SplitMeta{Size: 3072, UIDs: []uint32{0, 5}, GIDs: []uint32{0}})
		keep(l2, nil)
		if p, meta, ok := tf.Split(l1.DiffID); !ok || meta == nil || meta.Size != 3072 || len(meta.UIDs) != 2 {
			t.Errorf("l1: %q %+v %v", p, meta, ok)
		} else if b, _ := os.ReadFile(p); string(b) != l1.DiffID.String() {
			t.Errorf("l1's split holds %q", b)
		}
		if _, meta, ok := tf.Split(l2.DiffID); !ok || meta != nil {
			t.Errorf("l2 (kept without meta): %+v %v", meta, ok)
		}
		// Kept again without meta: the old meta does not stay.
		keep(l1, nil)
		if _, meta, ok := tf.Split(l1.DiffID); !ok || meta != nil {
			t.Errorf("l1 re-kept without meta: %+v %v", meta, ok)
		}
		keep(l1, &SplitMeta{Size: 1})
		_, err = Prune(root, func(d digest.Digest) bool { return d == l1.DiffID })
		mustDo(t, err)
		if _, meta, ok := tf.Split(l1.DiffID); !ok || meta == nil {
			t.Errorf("prune took l1's split or meta (kept tree): %+v %v", meta, ok)
		}
		if _, _, ok := tf.Split(l2.DiffID); ok {
			t.Error("prune left the split of a removed tree")
		}
		left, _ := filepath.Glob(filepath.Join(root, "splits", "*"))
		if len(left) != 2 {
			t.Errorf("splits dir after prune: %v, want l1's split and meta", left)
		}
	})
}

// A tree asked for while it is being given away (moved, not linked yet) is
// found where it went once the give is done, never reported gone: two
// platforms' store commits of one shared layer race so.
func TestTreeDuringGive(t *testing.T) {
	ctx := context.Background()
	l1, _ := baseLayers(t)
	eachTreeDriver(t, func(t *testing.T, d Driver, _ string) {
		g, tf := d.(TreeGiver), d.(TreeFinder)
		m, err := d.Prepare(ctx, layersOf(l1))
		mustDo(t, err)
		mustDo(t, m.Release())
		dir, done, ok, err := g.GiveTree(ctx, l1.DiffID)
		if !ok || err != nil {
			t.Fatalf("no tree (%v)", err)
		}
		elsewhere := filepath.Join(t.TempDir(), "moved")
		mustDo(t, os.Rename(dir, elsewhere))
		type found struct {
			dir string
			ok  bool
		}
		got := make(chan found, 1)
		go func() {
			p, ok := tf.Tree(l1.DiffID)
			got <- found{p, ok}
		}()
		select {
		case f := <-got:
			t.Fatalf("Tree answered during the give: %+v", f)
		case <-time.After(100 * time.Millisecond):
		}
		mustDo(t, done(elsewhere))
		if f := <-got; !f.ok || f.dir != elsewhere {
			t.Errorf("Tree after the give: %+v, want %s", f, elsewhere)
		}
	})
}

// eachTreeDriver runs f for every driver that keeps layer trees (all but
// copy), each over a root of its own.
func eachTreeDriver(t *testing.T, f func(t *testing.T, d Driver, root string)) {
	for _, dc := range availableDrivers(t) {
		if dc.name == "copy" {
			continue
		}
		t.Run(dc.name, func(t *testing.T) {
			root := t.TempDir()
			d, err := dc.open(root)
			mustDo(t, err)
			f(t, d, root)
		})
	}
}

// A stack mounted while one of its trees is being given away (moved, not
// linked yet: the build hands its base to the store while stages run)
// waits for the give and mounts the tree where it went; the give, for its
// part, waits for a mount already looking its layers up.
func TestMountDuringGive(t *testing.T) {
	ctx := context.Background()
	l1, l2 := baseLayers(t)
	eachTreeDriver(t, func(t *testing.T, d Driver, _ string) {
		g := d.(TreeGiver)
		want := viewLines(t, d, l1, l2)
		dir, done, ok, err := g.GiveTree(ctx, l1.DiffID)
		if !ok || err != nil {
			t.Fatalf("no tree (%v)", err)
		}
		elsewhere := filepath.Join(t.TempDir(), "moved")
		mustDo(t, os.Rename(dir, elsewhere))
		type viewed struct {
			root    string
			release func() error
			err     error
		}
		got := make(chan viewed, 1)
		go func() {
			root, release, err := d.View(ctx, layersOf(l1, l2))
			got <- viewed{root, release, err}
		}()
		select {
		case v := <-got:
			t.Fatalf("a view was mounted while its lower tree was moving: %+v", v)
		case <-time.After(100 * time.Millisecond):
		}
		mustDo(t, done(elsewhere))
		v := <-got
		if v.err != nil {
			t.Fatalf("view during a give: %v", v.err)
		}
		diffLines(t, "view mounted during the give", want, treeLines(t, v.root))
		mustDo(t, v.release())

		// The other way round: a give waits for a use of the layers' paths.
		gl := &d.(*overlayDriver).gives
		endUse := gl.use()
		gave := make(chan error, 1)
		go func() {
			_, done, ok, err := g.GiveTree(ctx, l2.DiffID)
			if err == nil && ok {
				err = done("")
			}
			gave <- err
		}()
		waitState(t, gl, func() bool { return gl.waitingGives == 1 })
		endUse()
		mustDo(t, <-gave)
	})
}

// A probe's success is kept per file system for the boot (in the user's
// runtime directory): a second store on it opens without probing; an entry
// that does not match (another file system, kernel, user namespace) is
// probed again.
func TestProbeKeptPerFileSystem(t *testing.T) {
	for _, dc := range availableDrivers(t) {
		if dc.name == "copy" {
			continue
		}
		t.Run(dc.name, func(t *testing.T) {
			t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
			open := func() {
				t.Helper()
				_, err := dc.open(t.TempDir())
				mustDo(t, err)
			}
			n := probes.Load()
			open()
			open()
			if got := probes.Load() - n; got != 1 {
				t.Fatalf("%d probes for two stores on one file system, want 1", got)
			}
			entries, err := filepath.Glob(filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "builder", "snapshot-probes", "*"))
			mustDo(t, err)
			if len(entries) != 1 {
				t.Fatalf("probe entries %v, want one", entries)
			}
			mustDo(t, os.WriteFile(entries[0], []byte("overlay user. dev=1 another file system"), 0o600))
			open()
			if got := probes.Load() - n; got != 2 {
				t.Errorf("%d probes after the entry stopped matching, want 2", got)
			}
		})
	}
}
