package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/builder-dev/builder/content"
	"go.podman.io/storage/pkg/ioutils"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrMiss is returned by Index.Get when no usable entry exists.
var ErrMiss = errors.New("cache miss")

// Record is what a cached step produced.
type Record struct {
	Key    string  `json:"key"`
	Parent string  `json:"parent"`
	Step   string  `json:"step"` // the instruction, for `cache ls` and explanations
	Inputs []Input `json:"inputs,omitempty"`
	// Layer is the step's layer blob in the blob store; nil when the step
	// changed nothing (an empty layer).
	Layer  *ocispec.Descriptor `json:"layer,omitempty"`
	DiffID digest.Digest       `json:"diff_id,omitempty"`
	// InStore: the layer is not in the blob store but in the local image
	// store, as the layer with this diff ID (builds that end there keep no
	// other copy).
	InStore bool `json:"in_store,omitempty"`
	// InTree: the layer is kept as its tree in the build's snapshot store
	// and the tar-split beside it, not as a blob (a stage of a build that
	// ends in the local store).
	InTree  bool      `json:"in_tree,omitempty"`
	Created time.Time `json:"created"`
	// LastUsed is the entry file's mtime (set on every hit), filled by reads.
	LastUsed time.Time `json:"-"`
}

// Index maps step keys to records: <dir>/entries/<key>.json, each written
// to a temp file, fsynced and renamed, so a killed writer leaves either the
// old state or the whole entry, and an entry that does not parse or whose
// blob is gone is a miss, never an error. Blobs live in the blob store.
type Index struct {
	dir     string
	blobs   *content.Store
	lock    *os.File
	inStore func(diffID digest.Digest) bool
	inTree  func(diffID digest.Digest) bool
}

// SetStoreCheck tells the index how to see whether the local image store
// holds a layer (for InStore records; without it they are misses).
func (x *Index) SetStoreCheck(has func(diffID digest.Digest) bool) { x.inStore = has }

// SetTreeCheck tells the index how to see whether a layer's tree and
// tar-split are still kept (for InTree records; without it they are
// misses).
func (x *Index) SetTreeCheck(has func(diffID digest.Digest) bool) { x.inTree = has }

// OpenIndex opens (creating) the index under dir, with blobs as its blob
// store, and takes a shared lock that Prune's exclusive one waits for, so
// no entry a running build may still use disappears under it.
func OpenIndex(dir string, blobs *content.Store) (*Index, error) {
	x := &Index{dir: dir, blobs: blobs}
	for _, d := range []string{x.entries(), x.files()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("cache index: %w", err)
		}
	}
	f, err := SharedLock(dir)
	if err != nil {
		return nil, err
	}
	x.lock = f
	for _, d := range []string{x.entries(), x.files()} {
		sweepTemps(d, time.Hour)
	}
	return x, nil
}

// SharedLock takes the shared lock of the cache under dir, which Prune's
// exclusive one waits for: whoever uses blobs of the content store (a
// build, a push, a pull) holds it, so prune never deletes a blob in use.
// Close releases it.
func SharedLock(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cache lock: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cache lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		f.Close()
		return nil, fmt.Errorf("cache lock: %w", err)
	}
	return f, nil
}

// Close releases the shared lock.
func (x *Index) Close() error {
	if x.lock == nil {
		return nil
	}
	err := x.lock.Close()
	x.lock = nil
	return err
}

func (x *Index) entries() string { return filepath.Join(x.dir, "entries") }
func (x *Index) files() string   { return filepath.Join(x.dir, "files") }
func (x *Index) entryPath(k Key) string {
	return filepath.Join(x.entries(), k.Hex()+".json")
}

// Get returns k's record if it is whole, younger than ttl (0: no limit) and
// its blob is present; otherwise ErrMiss. A hit refreshes the entry's
// last-use time (what Prune ages by).
func (x *Index) Get(k Key, ttl time.Duration) (Record, error) {
	if k.IsZero() {
		return Record{}, ErrMiss
	}
	r, err := x.read(x.entryPath(k))
	if err != nil || r.Key != k.Hex() {
		return Record{}, ErrMiss
	}
	if ttl > 0 && time.Since(r.Created) > ttl {
		return Record{}, ErrMiss
	}
	switch {
	case r.Layer == nil:
	case r.InStore:
		if x.inStore == nil || !x.inStore(r.DiffID) {
			return Record{}, ErrMiss // the image that held it was removed
		}
	case r.InTree:
		if x.inTree == nil || !x.inTree(r.DiffID) {
			return Record{}, ErrMiss // pruned, or removed with an image that took the tree
		}
	default:
		if n, err := x.blobs.Stat(r.Layer.Digest); err != nil || n != r.Layer.Size {
			return Record{}, ErrMiss
		}
	}
	now := time.Now()
	os.Chtimes(x.entryPath(k), now, now)
	return r, nil
}

func (x *Index) read(p string) (Record, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return Record{}, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, err
	}
	if _, err := ParseKey(r.Key); err != nil {
		return Record{}, err
	}
	if r.Layer != nil && (r.Layer.Digest.Validate() != nil || r.DiffID.Validate() != nil) {
		return Record{}, errors.New("bad layer digest")
	}
	if fi, err := os.Stat(p); err == nil {
		r.LastUsed = fi.ModTime()
	}
	return r, nil
}

// Put stores r under its key (replacing any entry).
func (x *Index) Put(r Record) error {
	k, err := ParseKey(r.Key)
	if err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return x.writeAtomic(x.entryPath(k), b)
}

// PutFiles keeps, beside k's entry, the digest of every source file a COPY
// read, so a later miss can name the file that changed.
func (x *Index) PutFiles(k Key, files map[string]digest.Digest) error {
	b, err := json.Marshal(files)
	if err != nil {
		return err
	}
	return x.writeAtomic(filepath.Join(x.files(), k.Hex()+".json"), b)
}

// Files returns what PutFiles kept for k (nil when nothing).
func (x *Index) Files(k Key) map[string]digest.Digest {
	b, err := os.ReadFile(filepath.Join(x.files(), k.Hex()+".json"))
	if err != nil {
		return nil
	}
	var m map[string]digest.Digest
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	return m
}

func (x *Index) writeAtomic(p string, b []byte) error {
	if err := ioutils.AtomicWriteFile(p, b, 0o600); err != nil {
		return fmt.Errorf("cache index: %w", err)
	}
	return nil
}

// List returns every readable entry, newest use first.
func (x *Index) List() ([]Record, error) {
	ents, err := os.ReadDir(x.entries())
	if err != nil {
		return nil, err
	}
	var out []Record
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		r, err := x.read(filepath.Join(x.entries(), e.Name()))
		if err != nil {
			continue
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastUsed.After(out[j].LastUsed) })
	return out, nil
}

// Children returns the entries whose parent is parent: the candidates a
// miss is explained against.
func (x *Index) Children(parent Key) []Record {
	all, _ := x.List()
	var out []Record
	for _, r := range all {
		if r.Parent == parent.Hex() {
			out = append(out, r)
		}
	}
	return out
}

// remove deletes k's entry and its file list.
func (x *Index) remove(hex string) error {
	os.Remove(filepath.Join(x.files(), hex+".json"))
	err := os.Remove(filepath.Join(x.entries(), hex+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// PruneOptions choose what Prune removes: entries unused for longer than
// MaxAge (0: any age), then the least recently used until the cache holds
// at most MaxBytes (0: no size limit); All removes everything.
type PruneOptions struct {
	MaxAge   time.Duration
	MaxBytes int64
	All      bool
	// Also runs last, still under the exclusive lock (no build is running),
	// with the diff IDs of the entries kept: for caches derived from layers,
	// such as extracted snapshot trees.
	Also func(kept map[digest.Digest]bool) error
}

// PruneResult says what Prune removed.
type PruneResult struct {
	Entries int
	Blobs   int
	Bytes   int64
}

// Prune removes entries, then every blob no remaining entry references. It
// waits for running builds (their shared locks) and blocks new ones.
func Prune(ctx context.Context, dir string, blobs *content.Store, o PruneOptions) (PruneResult, error) {
	var res PruneResult
	lf, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return res, nil // no cache yet
		}
		return res, err
	}
	defer lf.Close()
	if err := flockCtx(ctx, lf, syscall.LOCK_EX); err != nil {
		return res, err
	}
	x := &Index{dir: dir, blobs: blobs}
	recs, err := x.List()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return res, err
	}
	keep := recs[:0:0]
	var total int64
	for _, r := range recs {
		total += r.size()
	}
	// Oldest use last in recs: walk from the end for the size limit.
	drop := make([]bool, len(recs))
	for i, r := range recs {
		if o.All || (o.MaxAge > 0 && time.Since(r.LastUsed) > o.MaxAge) {
			drop[i] = true
			total -= r.size()
		}
	}
	for i := len(recs) - 1; i >= 0 && o.MaxBytes > 0 && total > o.MaxBytes; i-- {
		if !drop[i] {
			drop[i] = true
			total -= recs[i].size()
		}
	}
	for i, r := range recs {
		if !drop[i] {
			keep = append(keep, r)
			continue
		}
		if err := x.remove(r.Key); err != nil {
			return res, err
		}
		res.Entries++
	}
	used := map[digest.Digest]bool{}
	for _, r := range keep {
		if r.Layer != nil {
			used[r.Layer.Digest] = true
		}
	}
	n, bytes, err := blobs.RemoveUnused(ctx, used)
	res.Blobs, res.Bytes = n, bytes
	if err != nil || o.Also == nil {
		return res, err
	}
	kept := map[digest.Digest]bool{}
	for _, r := range keep {
		if r.Layer != nil {
			kept[r.DiffID] = true
		}
	}
	return res, o.Also(kept)
}

// size is the bytes an entry's blob takes.
func (r Record) size() int64 {
	if r.Layer == nil || r.InStore || r.InTree {
		return 0
	}
	return r.Layer.Size
}

func flockCtx(ctx context.Context, f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sweepTemps removes the temp files of atomic writes (".tmp-*") older
// than age: killed writers leave them; younger ones may belong to a
// running build.
func sweepTemps(dir string, age time.Duration) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > age {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
