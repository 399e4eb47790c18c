package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage/pkg/ioutils"
)

var _ TreeGiver = (*overlayDriver)(nil)

func (d *overlayDriver) OpaqueXattr() string { return d.prefix + "opaque" }

// GiveTree hands over a committed layer tree. After done(movedTo) the layer
// store keeps a symlink to movedTo in the tree's place: one lasting copy of
// the layer, used as an overlay lower dir where it now lives (as buildah
// uses containers/storage's own layer directories). If the new owner later
// deletes it, the link dangles and the layer is extracted again on demand.
func (d *overlayDriver) GiveTree(ctx context.Context, diffID digest.Digest) (string, func(string) error, bool, error) {
	final, err := d.store.path(diffID)
	if err != nil {
		return "", nil, false, err
	}
	if fi, err := os.Lstat(final); err != nil || !fi.IsDir() {
		return "", nil, false, nil // not extracted here, or given already
	}
	// No use of layer paths while the tree moves (giveLock); the lock file
	// after it, as a use may be waiting for that lock (an extraction).
	given := d.gives.give()
	flocked, err := flockPath(ctx, filepath.Join(d.store.locks, filepath.Base(final)))
	if err != nil {
		given()
		return "", nil, false, err
	}
	unlock := func() { flocked(); given() }
	if fi, err := os.Lstat(final); err != nil || !fi.IsDir() {
		unlock()
		return "", nil, false, nil
	}
	called := false
	done := func(movedTo string) error {
		if called {
			return errors.New("snapshot: GiveTree's done called twice")
		}
		called = true
		defer unlock()
		if movedTo == "" {
			return nil
		}
		if _, err := os.Lstat(final); err == nil {
			return fmt.Errorf("layer store: %s still holds layer %s after it moved to %s", final, diffID, movedTo)
		}
		if err := os.Symlink(movedTo, final); err != nil {
			return fmt.Errorf("layer store: %w", err)
		}
		return nil
	}
	return final, done, true, nil
}

// layerDir reports whether p is a usable layer tree: a directory, or a
// link to one (a tree given to the image store). A dangling link is
// removed (its layer was deleted there) so the layer can be extracted
// again; the caller holds the layer's lock when clean is set.
func layerDir(p string, clean bool) bool {
	fi, err := os.Lstat(p)
	if err != nil {
		return false
	}
	if fi.IsDir() {
		return true
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		return false
	}
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		return true
	}
	if clean {
		os.Remove(p)
	}
	return false
}

var _ TreeFinder = (*overlayDriver)(nil)

func (d *overlayDriver) Tree(diffID digest.Digest) (string, bool) {
	p, err := d.store.path(diffID)
	if err != nil {
		return "", false
	}
	if !layerDir(p, false) {
		// A tree being given away is neither here nor linked until the
		// give is done, and the giver holds the layer's lock meanwhile
		// (two platforms' store commits of one shared layer): wait for it.
		unlock, err := flockPath(context.Background(), filepath.Join(d.store.locks, filepath.Base(p)))
		if err != nil {
			return "", false
		}
		ok := layerDir(p, false)
		unlock()
		if !ok {
			return "", false
		}
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", false
	}
	return real, true
}

// splitsDir holds kept tar-splits, <root>/splits/<hex>, beside <root>/layers.
func (d *overlayDriver) splitPath(diffID digest.Digest) (string, error) {
	p, err := d.store.path(diffID)
	if err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(d.store.dir), "splits", filepath.Base(p)), nil
}

func (d *overlayDriver) KeepSplit(diffID digest.Digest, path string, meta *SplitMeta) (string, error) {
	dst, err := d.splitPath(diffID)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return "", err
	}
	// The meta goes first and the split last: a split is only read with
	// the meta written beside it, or with none (an older one is removed).
	os.Remove(dst + splitMetaSuffix)
	if meta != nil {
		b, err := json.Marshal(meta)
		if err != nil {
			return "", err
		}
		// Not synced: a tree is not either (see markUnsynced), and a torn meta is read as none.
		if err := ioutils.AtomicWriteFileWithOpts(dst+splitMetaSuffix, b, 0o600, &ioutils.AtomicFileWriterOptions{NoSync: true}); err != nil {
			return "", fmt.Errorf("keep tar-split: %w", err)
		}
	}
	if err := os.Rename(path, dst); err != nil {
		os.Remove(dst + splitMetaSuffix)
		return "", fmt.Errorf("keep tar-split: %w", err)
	}
	return dst, nil
}

// splitMetaSuffix names a kept tar-split's meta file, beside it.
const splitMetaSuffix = ".meta"

func (d *overlayDriver) Split(diffID digest.Digest) (string, *SplitMeta, bool) {
	p, err := d.splitPath(diffID)
	if err != nil {
		return "", nil, false
	}
	if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() {
		return "", nil, false
	}
	var meta *SplitMeta
	if b, err := os.ReadFile(p + splitMetaSuffix); err == nil {
		meta = &SplitMeta{}
		if json.Unmarshal(b, meta) != nil || meta.Size <= 0 {
			meta = nil // read the tar again instead
		}
	}
	return p, meta, true
}
