package snapshot

import (
	"context"
	"io"

	digest "github.com/opencontainers/go-digest"
)

// Driver gives writable views of a stack of layers. Implementations:
// kernel overlayfs (in the user namespace, "userxattr"), fuse-overlayfs,
// and a copy driver that works everywhere.
type Driver interface {
	// Name is "overlay", "fuse-overlayfs" or "copy".
	Name() string
	// Prepare returns a writable root holding layers (bottom first). The
	// caller owns the Mount until Commit or Release.
	Prepare(ctx context.Context, layers []Layer) (Mount, error)
	// View returns a read-only-by-contract root holding layers, for reads
	// such as COPY --from; release must be called when done.
	View(ctx context.Context, layers []Layer) (root string, release func() error, err error)
}

// Layer is one committed layer a driver can materialize.
type Layer struct {
	DiffID digest.Digest
	// Open returns the layer's uncompressed tar stream; it is called only
	// when the driver has not extracted this layer before.
	Open func(ctx context.Context) (io.ReadCloser, error)
}

// Mount is one writable snapshot, used by one goroutine.
type Mount interface {
	// Root is the merged root filesystem: spec.Root.Path for RUN, the
	// destination root for COPY.
	Root() string
	// Diff writes the changes made under Root since Prepare as an OCI layer
	// tar (sorted, PAX, .wh. whiteouts, .wh..wh..opq opaque dirs).
	// Identical changes give identical bytes on every driver.
	Diff(ctx context.Context, w io.Writer, opts WriteOptions) error
	// Commit records the changes as the layer diffID (the digest of what
	// Diff wrote), so later Prepare calls over the longer stack are cheap,
	// and releases the mount.
	Commit(ctx context.Context, diffID digest.Digest) error
	// Release discards uncommitted changes and unmounts. Idempotent.
	Release() error
}

// TreeGiver is a driver whose committed layers are directory trees in
// kernel overlay format (0/0 character-device whiteouts, opaque xattrs),
// which an image store using overlay itself can take over instead of
// extracting the same layer a second time.
type TreeGiver interface {
	// GiveTree returns the directory holding layer diffID, locked against
	// other users of the layer until done is called; ok is false when the
	// driver has no tree of its own for it. done(movedTo) says where the
	// tree went ("" when it did not move): the driver then finds the layer
	// there. done must be called exactly once when ok is true.
	GiveTree(ctx context.Context, diffID digest.Digest) (dir string, done func(movedTo string) error, ok bool, err error)
	// OpaqueXattr is the xattr name that marks opaque directories in these
	// trees ("user.overlay.opaque" in a user namespace).
	OpaqueXattr() string
}

// DirectPreparer is a driver whose snapshot can be written without being
// mounted: the changes go straight into the new layer's own directory,
// never an upper dir under a live overlay mount. A COPY needs no merged
// view to write, and a plain directory can take hard links to an earlier
// layer's files (a rebuild that reuses what did not change).
type DirectPreparer interface {
	// PrepareDirect returns a snapshot over layers whose Root is the new
	// layer's directory (empty), and view, a read-only merged view of
	// layers for lookups (existing directories, links, owners). The view
	// lives until the Mount is committed or released. What is written must
	// follow overlay's rules: a directory that exists below is brought up
	// with its metadata before anything is written into it.
	PrepareDirect(ctx context.Context, layers []Layer) (m Mount, view string, err error)
}

// Extractor is a driver that keeps extracted layers: Extract makes sure
// layers are, without mounting anything, so a later Prepare or View over
// them finds them ready (or waits for an Extract still running).
type Extractor interface {
	Extract(ctx context.Context, layers []Layer) error
}

// TreeFinder finds the directory of a committed layer, wherever it lives
// (the layer store, or the image store it was given to), without
// extracting anything: a tree to hard-link unchanged files from.
type TreeFinder interface {
	Tree(diffID digest.Digest) (dir string, ok bool)
	// KeepSplit keeps the tar-split file at path (moved) as layer
	// diffID's, so the tree and it are the layer, with no tar or blob
	// beside them; it returns where the file now is. meta, when known,
	// is kept with it.
	KeepSplit(diffID digest.Digest, path string, meta *SplitMeta) (string, error)
	// Split is where layer diffID's kept tar-split is, if there is one,
	// and its meta (nil when it was not known).
	Split(diffID digest.Digest) (string, *SplitMeta, bool)
}

// SplitMeta is what a store needs beside a tar-split to take the layer
// without reading its tar again: the tar's length and the owners it names.
type SplitMeta struct {
	Size int64    `json:"size"`
	UIDs []uint32 `json:"uids"`
	GIDs []uint32 `json:"gids"`
}
