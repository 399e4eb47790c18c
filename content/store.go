// Package content is the project's content-addressed blob store: layer
// blobs of builds, blobs pulled from registries, compressed variants and
// remote cache entries all live in it, under their digests.
package content

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrNotFound is returned by Store.Open for an unknown digest.
var ErrNotFound = errors.New("blob not found")

// Store is a content-addressed store: DIR/sha256/<hex>. A blob becomes
// visible only after it was fully written, fsynced and renamed into place,
// so a crash never leaves a torn blob under its digest.
type Store struct {
	dir string
}

// OpenStore opens (creating) a blob store rooted at dir.
func OpenStore(dir string) (*Store, error) {
	for _, d := range []string{filepath.Join(dir, "sha256"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("blob store: %w", err)
		}
	}
	sweepTemps(filepath.Join(dir, "tmp"), 24*time.Hour) // left by killed writers
	return &Store{dir: dir}, nil
}

// RemoveUnused deletes every blob not in used and returns how many and
// how many bytes. The caller keeps writers away (the cache's exclusive lock).
func (b *Store) RemoveUnused(ctx context.Context, used map[digest.Digest]bool) (int, int64, error) {
	dir := filepath.Join(b.dir, "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	var n int
	var bytes int64
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return n, bytes, err
		}
		if used[digest.NewDigestFromEncoded(digest.SHA256, e.Name())] {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err == nil {
			n++
			bytes += fi.Size()
		}
	}
	return n, bytes, nil
}

// Size is the total size of the blobs in the store.
func (b *Store) Size() (int64, int, error) {
	ents, err := os.ReadDir(filepath.Join(b.dir, "sha256"))
	if err != nil {
		return 0, 0, err
	}
	var total int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			total += fi.Size()
		}
	}
	return total, len(ents), nil
}

// Path is where the blob with digest d lives (whether or not it exists).
func (b *Store) Path(d digest.Digest) string {
	return filepath.Join(b.dir, d.Algorithm().String(), d.Encoded())
}

// Stat reports the size of blob d, or ErrNotFound.
func (b *Store) Stat(d digest.Digest) (int64, error) {
	if err := d.Validate(); err != nil {
		return 0, err
	}
	fi, err := os.Stat(b.Path(d))
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("%s: %w", d, ErrNotFound)
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// Open returns the blob's bytes.
func (b *Store) Open(d digest.Digest) (*os.File, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	f, err := os.Open(b.Path(d))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", d, ErrNotFound)
	}
	return f, err
}

// Ingest starts writing a new blob. Write the bytes, then Commit; Close
// without Commit discards them.
func (b *Store) Ingest() (*Ingester, error) {
	f, err := os.CreateTemp(filepath.Join(b.dir, "tmp"), "ingest-")
	if err != nil {
		return nil, fmt.Errorf("blob store: %w", err)
	}
	return &Ingester{b: b, f: f, h: sha256.New()}, nil
}

// Ingester writes one blob.
type Ingester struct {
	b       *Store
	f       *os.File
	h       hash.Hash
	n       int64
	flushed int64 // bytes handed to writeback so far
	done    bool
}

// writebackChunk is how much a blob grows between writeback requests.
const writebackChunk = 8 << 20

func (w *Ingester) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	if w.n-w.flushed >= writebackChunk {
		startWriteback(w.f, w.flushed, w.n-w.flushed)
		w.flushed = w.n
	}
	return n, err
}

// Name is the path of the file being written (for a reader that follows
// the blob as it grows; the file is renamed, not copied, on Commit).
func (w *Ingester) Name() string { return w.f.Name() }

// Commit publishes the blob under its digest. When expected is not empty
// and differs from what was written, the blob is discarded and an error
// names both digests.
func (w *Ingester) Commit(expected digest.Digest) (digest.Digest, int64, error) {
	d := digest.NewDigest(digest.SHA256, w.h)
	if expected != "" && expected != d {
		w.Close()
		return "", 0, fmt.Errorf("blob digest mismatch: expected %s, got %s", expected, d)
	}
	if err := w.f.Sync(); err != nil {
		w.Close()
		return "", 0, err
	}
	if err := w.f.Close(); err != nil {
		w.Close()
		return "", 0, err
	}
	w.done = true
	if err := os.Rename(w.f.Name(), w.b.Path(d)); err != nil {
		os.Remove(w.f.Name())
		return "", 0, err
	}
	return d, w.n, nil
}

// Close aborts an uncommitted ingest.
func (w *Ingester) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	return os.Remove(w.f.Name())
}

// Put stores r's bytes as one blob.
func (b *Store) Put(r io.Reader, expected digest.Digest) (digest.Digest, int64, error) {
	w, err := b.Ingest()
	if err != nil {
		return "", 0, err
	}
	defer w.Close()
	if _, err := io.Copy(w, r); err != nil {
		return "", 0, err
	}
	return w.Commit(expected)
}

// sweepTemps removes temp files older than age (left by killed writers;
// younger ones may belong to a running build).
func sweepTemps(dir string, age time.Duration) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > age {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// ErrMismatch is wrapped by every error of a blob that is not what its
// descriptor says: another digest, or another size.
var ErrMismatch = errors.New("blob does not match its descriptor")

// PutVerified stores r's bytes as the blob desc describes, reading at
// most desc.Size+1 bytes: a blob of another size or digest is refused
// (ErrMismatch) and nothing is kept. desc.Size < 0 checks the digest only.
func (b *Store) PutVerified(r io.Reader, desc ocispec.Descriptor) error {
	v := Verify(io.NopCloser(r), desc.Digest, desc.Size)
	if _, _, err := b.Put(v, desc.Digest); err != nil {
		return err
	}
	return nil
}

// Verify wraps a blob stream so that reading it fails, naming the
// digest, as soon as it is longer than size, or at its end if it is
// shorter or has another digest. A registry's answer is hostile until it
// has been checked against both (size < 0: unknown, digest only).
func Verify(rc io.ReadCloser, d digest.Digest, size int64) io.ReadCloser {
	return &verifier{rc: rc, v: d.Verifier(), d: d, size: size}
}

type verifier struct {
	rc   io.ReadCloser
	v    digest.Verifier
	d    digest.Digest
	size int64
	n    int64
}

func (r *verifier) Read(p []byte) (int, error) {
	if r.size >= 0 && int64(len(p)) > r.size-r.n+1 {
		p = p[:r.size-r.n+1] // one byte more than allowed shows a long blob
	}
	n, err := r.rc.Read(p)
	r.v.Write(p[:n]) // digest.Verifier's Write never fails
	r.n += int64(n)
	if r.size >= 0 && r.n > r.size {
		return n, fmt.Errorf("blob %s: longer than its size %d: %w", r.d, r.size, ErrMismatch)
	}
	if err == io.EOF {
		if r.size >= 0 && r.n != r.size {
			return n, fmt.Errorf("blob %s: %d bytes, its descriptor says %d: %w", r.d, r.n, r.size, ErrMismatch)
		}
		if !r.v.Verified() {
			return n, fmt.Errorf("blob %s: content does not match its digest: %w", r.d, ErrMismatch)
		}
	}
	return n, err
}

func (r *verifier) Close() error { return r.rc.Close() }
