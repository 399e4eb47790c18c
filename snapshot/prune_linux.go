package snapshot

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

// PruneResult says what Prune removed.
type PruneResult struct {
	Trees int
	Bytes int64
}

// Prune removes extracted layer trees under root (a snapshot root as the
// drivers use it) whose diff ID keep rejects (keep nil: all), and the copy
// driver's cached chains. They are caches: a layer is extracted again from
// its blob or image when a build needs it. The caller makes sure no build
// runs (the layer cache's exclusive lock): a tree in use as a lower
// directory must not go.
func Prune(root string, keep func(digest.Digest) bool) (PruneResult, error) {
	var res PruneResult
	layers := filepath.Join(root, "layers")
	ents, err := os.ReadDir(layers)
	if err != nil && !os.IsNotExist(err) {
		return res, err
	}
	for _, e := range ents {
		name := e.Name()
		if e.Type()&os.ModeSymlink != 0 && !strings.HasPrefix(name, ".") {
			// A tree given to the image store: the store owns it; only a
			// link its deletion left dangling goes.
			layerDir(filepath.Join(layers, name), true)
			continue
		}
		if !e.IsDir() || strings.HasPrefix(name, ".") {
			continue
		}
		d := digest.NewDigestFromEncoded(digest.SHA256, name)
		if d.Validate() != nil || (keep != nil && keep(d)) {
			continue
		}
		if err := res.drop(filepath.Join(layers, name), filepath.Join(layers, ".tmp-prune-"+name)); err != nil {
			return res, err
		}
		// Its unsynced marker, if any, has nothing left to guard.
		if marks, _ := filepath.Glob(filepath.Join(layers, unsyncedDir, name+".*")); len(marks) > 0 {
			for _, m := range marks {
				os.Remove(m)
			}
		}
	}
	// Kept tar-splits go with their trees.
	splits := filepath.Join(root, "splits")
	sents, _ := os.ReadDir(splits)
	for _, e := range sents {
		// A meta file goes with its split; a temporary is a torn write's
		// (no build runs now).
		name := strings.TrimSuffix(e.Name(), splitMetaSuffix)
		if strings.HasPrefix(name, ".tmp-") || !layerDir(filepath.Join(layers, name), false) {
			os.Remove(filepath.Join(splits, e.Name()))
		}
	}
	chains := filepath.Join(root, "copy", "chains")
	cents, err := os.ReadDir(chains)
	if err != nil && !os.IsNotExist(err) {
		return res, err
	}
	for _, e := range cents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			if err := res.drop(filepath.Join(chains, e.Name()), filepath.Join(chains, ".tmp-prune-"+e.Name())); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// drop renames dir aside (so no reader sees it half gone) and removes it.
func (r *PruneResult) drop(dir, aside string) error {
	n := treeSize(dir)
	if err := os.Rename(dir, aside); err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	if err := removeTree(aside); err != nil {
		return err
	}
	r.Trees++
	r.Bytes += n
	return nil
}

// Size is the apparent size of the trees Prune would consider.
func Size(root string) int64 {
	return treeSize(filepath.Join(root, "layers")) + treeSize(filepath.Join(root, "copy", "chains"))
}

func treeSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
