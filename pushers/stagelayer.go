package pushers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/internal/countio"
	"github.com/builder-dev/builder/layer"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage"
	drivers "go.podman.io/storage/drivers"
	"go.podman.io/storage/pkg/archive"
	"golang.org/x/sys/unix"
)

// Trees hands layer trees a build already wrote (snapshot.TreeGiver) to
// the store commit, which moves them into the store instead of extracting
// the same layer again: each new layer is written once, and lives once.
type Trees interface {
	GiveTree(ctx context.Context, diffID digest.Digest) (dir string, done func(movedTo string) error, ok bool, err error)
	OpaqueXattr() string
	// KeptSplit is the tar-split kept with the tree of diffID, with its
	// owners, and the tar's length, if there is one (a layer the build
	// extracted, e.g. a base layer).
	KeptSplit(diffID digest.Digest) (ts *layer.TarSplit, size int64, ok bool)
}

// treesFit says whether the store keeps layers in the trees' format:
// kernel overlay with the same xattr namespace, no mount program (its
// whiteouts are files), no forced modes, no composefs.
func treesFit(s storage.Store, t Trees) bool {
	if t == nil || s.GraphDriverName() != "overlay" || t.OpaqueXattr() != archive.GetOverlayXattrName("opaque") {
		return false
	}
	for _, o := range s.GraphOptions() {
		o = strings.ToLower(o)
		if strings.Contains(o, "mount_program") || strings.Contains(o, "force_mask") || strings.Contains(o, "composefs") {
			return false
		}
	}
	d, err := s.GraphDriver()
	if err != nil {
		return false
	}
	_, ok := d.(drivers.DriverWithDiffer)
	return ok
}

// stageLayer moves the build's tree of l into the store as layer id, with
// the tar-split made from l's tar (so the store gives the layer's exact
// bytes back, checked against its diff ID here). ok is false when there was
// no tree to move or the move did not happen: the caller applies the tar.
func stageLayer(ctx context.Context, s storage.Store, t Trees, id, parent string, l image.Layer) (ok bool, err error) {
	dir, done, ok, err := t.GiveTree(ctx, l.DiffID())
	if err != nil || !ok {
		return false, err
	}
	movedTo := ""
	defer func() {
		if derr := done(movedTo); derr != nil && err == nil {
			err = derr
		}
	}()
	ts, size, uids, gids, err := madeTarSplit(l)
	if ts == nil && err == nil {
		ts, size, uids, gids, err = keptTarSplit(t, l.DiffID())
	}
	if ts == nil && err == nil {
		if ts, size, uids, gids, err = tarSplit(ctx, l); err == nil {
			defer os.Remove(ts.Name())
		}
	}
	if err != nil {
		return false, err
	}
	desc := l.Descriptor()
	differ := &treeDiffer{dir: dir, out: drivers.DriverWithDifferOutput{
		Size: size, UIDs: uids, GIDs: gids, UncompressedDigest: l.DiffID(), CompressedDigest: desc.Digest, TarSplit: ts,
	}}
	opts := &drivers.ApplyDiffWithDifferOpts{}
	out, err := s.PrepareStagedLayer(opts, differ)
	if err != nil {
		if differ.moved {
			moveBack(differ.dest, dir)
		}
		ts.Close()
		if !differ.moved {
			return false, nil
		}
		return false, err
	}
	origSize := desc.Size
	_, err = s.ApplyStagedLayer(storage.ApplyStagedLayerOptions{ID: id, ParentLayer: parent, DiffOutput: out, DiffOptions: opts,
		LayerOptions: &storage.LayerOptions{OriginalDigest: desc.Digest, OriginalSize: &origSize, UncompressedDigest: l.DiffID()}})
	if errors.Is(err, storage.ErrDuplicateID) {
		// Another build put it there first: ours goes back.
		moveBack(out.Target, dir)
		s.CleanupStagedLayer(out)
		return true, nil
	}
	if err != nil {
		if moveBack(out.Target, dir) {
			s.CleanupStagedLayer(out)
			return false, nil // the tar is applied instead
		}
		s.CleanupStagedLayer(out)
		return false, nil // the tree is gone with the failed layer; the tar still has it
	}
	d, err := s.GraphDriver()
	if err == nil {
		var md map[string]string
		if md, err = d.Metadata(id); err == nil && md["UpperDir"] != "" {
			movedTo = md["UpperDir"]
			return true, nil
		}
	}
	// The layer is in the store, but where is not known: the build's layer
	// store forgets the tree and extracts the layer again if it needs it.
	return true, nil
}

// moveBack returns a tree from the store's staging directory to where the
// build keeps it, if it is still there.
func moveBack(staged, dir string) bool {
	if staged == "" {
		return false
	}
	if _, err := os.Lstat(staged); err != nil {
		return false
	}
	os.Remove(dir) // the empty directory left in its place, if any
	return os.Rename(staged, dir) == nil
}

// treeDiffer is a drivers.Differ whose "diff" is a rename of the finished
// tree into the staging directory.
type treeDiffer struct {
	dir   string
	out   drivers.DriverWithDifferOutput
	moved bool
	dest  string
}

func (t *treeDiffer) ApplyDiff(dest string, _ *archive.TarOptions, _ *drivers.DifferOptions) (drivers.DriverWithDifferOutput, error) {
	// dest is an empty directory the driver made: rename(2) replaces it
	// (os.Rename refuses any existing directory).
	if err := unix.Rename(t.dir, dest); err != nil {
		return drivers.DriverWithDifferOutput{}, err
	}
	t.moved, t.dest = true, dest
	return t.out, nil
}

func (t *treeDiffer) Close() error { return nil }

// madeTarSplit opens the tar-split the layer writer made while it wrote
// l's scratch tar, if it did (nil, nil otherwise).
func madeTarSplit(l image.Layer) (*os.File, int64, []uint32, []uint32, error) {
	st, ok := l.(*layer.Stored)
	if !ok || st.Split == nil || !st.Split.Owners || st.TarLen <= 0 {
		return nil, 0, nil, nil, nil
	}
	f, err := os.Open(st.Split.Path)
	if err != nil {
		return nil, 0, nil, nil, nil // read the tar again instead
	}
	return f, st.TarLen, st.Split.UIDs, st.Split.GIDs, nil
}

// keptTarSplit opens the tar-split kept with l's tree, if there is one
// with its owners (nil, nil otherwise).
func keptTarSplit(t Trees, diffID digest.Digest) (*os.File, int64, []uint32, []uint32, error) {
	ts, size, ok := t.KeptSplit(diffID)
	if !ok || !ts.Owners || size <= 0 {
		return nil, 0, nil, nil, nil
	}
	f, err := os.Open(ts.Path)
	if err != nil {
		return nil, 0, nil, nil, nil // read the tar again instead
	}
	return f, size, ts.UIDs, ts.GIDs, nil
}

// tarSplit reads l's tar once: it records the tar-split metadata the store
// needs to give the same bytes back (layer.WriteTarSplit, as the layer
// writer does), verifies the diff ID and lists the owners. The file is
// open, at offset 0.
func tarSplit(ctx context.Context, l image.Layer) (f *os.File, size int64, uids, gids []uint32, err error) {
	rc, err := layer.Uncompressed(ctx, l)
	if err != nil {
		return nil, 0, nil, nil, err
	}
	defer rc.Close()
	tmp, err := os.CreateTemp("", "builder-tarsplit-")
	if err != nil {
		return nil, 0, nil, nil, err
	}
	tmp.Close()
	fail := func(err error) (*os.File, int64, []uint32, []uint32, error) {
		os.Remove(tmp.Name())
		return nil, 0, nil, nil, err
	}
	v := digest.SHA256.Digester()
	counted := &countio.Reader{R: io.TeeReader(rc, v.Hash())}
	ts, err := layer.WriteTarSplit(&ctxReader{ctx: ctx, r: counted}, tmp.Name())
	if err != nil {
		return fail(err)
	}
	if got := v.Digest(); got != l.DiffID() {
		return fail(fmt.Errorf("layer tar has digest %s, not its diff ID %s", got, l.DiffID()))
	}
	if f, err = os.Open(ts.Path); err != nil {
		return fail(err)
	}
	return f, counted.N, ts.UIDs, ts.GIDs, nil
}
