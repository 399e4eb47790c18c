// Package layer turns a tar stream into a stored layer in one pass:
// tar → sha256 (diff_id) → compressor → sha256 (digest) → blob file.
package layer

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/builder-dev/builder/cache"
	"github.com/builder-dev/builder/internal/compress"
	"github.com/builder-dev/builder/internal/image"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Compression chooses how a new layer blob is stored.
type Compression struct {
	Kind  compress.Kind // compress.None, compress.Gzip or compress.Zstd
	Level int           // 0 = the compressor's default
	// Follow, when set and Kind compresses, is called once per layer with
	// the path of the blob file as it is written; it returns progress, told
	// the file's length after each write, and done, told how the layer
	// ended (nil: whole). A registry upload can so stream the blob while it
	// is made, without ever holding the writer back.
	Follow func(path string) (progress func(int64), done func(error))
	// RawDir, when set and Kind compresses, also keeps the uncompressed
	// tar in a scratch file there (Stored.Raw), so a local store commit in
	// the same build needs no decompression. With Kind None the tar goes
	// only there, not to the blob store: for a build that ends in the local
	// store, whose layer is then the lasting copy (no fsync, no third copy).
	// The caller removes RawDir.
	RawDir string
}

// MediaType is the OCI layer media type for blobs written with c.
func (c Compression) MediaType() string {
	switch c.Kind {
	case compress.Gzip:
		return ocispec.MediaTypeImageLayerGzip
	case compress.Zstd:
		return ocispec.MediaTypeImageLayerZstd
	default:
		return ocispec.MediaTypeImageLayer
	}
}

// Write runs produce with a writer whose bytes become a layer blob in blobs,
// computing diff_id and digest in the same pass.
func Write(ctx context.Context, blobs *cache.Blobs, c Compression, produce func(w io.Writer) error) (image.Layer, error) {
	if c.Kind == compress.None && c.RawDir != "" {
		return writeScratch(ctx, c.RawDir, produce)
	}
	ing, err := blobs.Ingest()
	if err != nil {
		return nil, err
	}
	defer ing.Close()
	out := io.Writer(ing)
	teeDone := func(error) {}
	if c.Follow != nil && c.Kind != compress.None {
		progress, done := c.Follow(ing.Name())
		out, teeDone = &notifyWriter{w: ing, progress: progress}, done
	}
	zw, err := compress.NewWriter(out, c.Kind, c.Level)
	if err != nil {
		teeDone(err)
		return nil, err
	}
	finished := false
	defer func() {
		if !finished {
			teeDone(errors.New("layer not written"))
		}
	}()
	diffHash := sha256.New()
	var size int64
	sinks := []io.Writer{diffHash, zw}
	var raw *os.File
	if c.RawDir != "" && c.Kind != compress.None {
		if raw, err = os.CreateTemp(c.RawDir, "layer-*.tar"); err != nil {
			return nil, err
		}
		defer func() {
			if raw != nil {
				raw.Close()
				os.Remove(raw.Name())
			}
		}()
		sinks = append(sinks, raw)
	}
	// Tar writers make three small writes per file; a syscall for each
	// would cost more than the file on a layer of many small files.
	bw := bufio.NewWriterSize(io.MultiWriter(sinks...), 1<<20)
	cw := &countWriter{w: bw, n: &size}
	if err := produce(cw); err != nil {
		zw.Close()
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		zw.Close()
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress layer: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d, n, err := ing.Commit("")
	if err != nil {
		return nil, err
	}
	finished = true
	teeDone(nil)
	st := &Stored{
		Blobs:  blobs,
		Desc:   ocispec.Descriptor{MediaType: c.MediaType(), Digest: d, Size: n},
		Diff:   digest.NewDigest(digest.SHA256, diffHash),
		TarLen: size,
	}
	if raw != nil {
		if err := raw.Close(); err != nil {
			return nil, err
		}
		st.Raw, raw = raw.Name(), nil
	}
	return st, nil
}

// Stored is a layer whose blob lives in the local blob store.
type Stored struct {
	Blobs  *cache.Blobs
	Desc   ocispec.Descriptor
	Diff   digest.Digest
	TarLen int64 // uncompressed size, when known
	// Raw is a scratch file holding the uncompressed tar (see
	// Compression.RawDir), or empty.
	Raw string
}

func (l *Stored) Descriptor() ocispec.Descriptor { return l.Desc }
func (l *Stored) DiffID() digest.Digest          { return l.Diff }
func (l *Stored) Open(context.Context) (io.ReadCloser, error) {
	if l.Blobs == nil {
		return os.Open(l.Raw) // a scratch layer (see Compression.RawDir)
	}
	return l.Blobs.Open(l.Desc.Digest)
}

// Scratch reports whether l lives only in a build's scratch file: its
// lasting copy is the one the local store commit makes.
func Scratch(l image.Layer) bool {
	st, ok := l.(*Stored)
	return ok && st.Blobs == nil
}

// writeScratch writes the tar produce makes to a file in dir, with its
// diff ID (which is also its digest, uncompressed).
func writeScratch(ctx context.Context, dir string, produce func(w io.Writer) error) (image.Layer, error) {
	f, err := os.CreateTemp(dir, "layer-*.tar")
	if err != nil {
		return nil, err
	}
	keep := false
	defer func() {
		if !keep {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	var size int64
	bw := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	if err := produce(&countWriter{w: bw, n: &size}); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	keep = true
	d := digest.NewDigest(digest.SHA256, h)
	return &Stored{Desc: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: size},
		Diff: d, TarLen: size, Raw: f.Name()}, nil
}

// RawForm returns the layer as its uncompressed tar when a scratch copy of
// it exists (Stored.Raw), for destinations that would only decompress it.
func RawForm(l image.Layer) (image.Layer, bool) {
	st, ok := l.(*Stored)
	if !ok || st.Raw == "" || st.TarLen <= 0 {
		return l, false
	}
	return &rawFile{path: st.Raw, diff: st.Diff, size: st.TarLen}, true
}

type rawFile struct {
	path string
	diff digest.Digest
	size int64
}

func (r *rawFile) Descriptor() ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: r.diff, Size: r.size}
}
func (r *rawFile) DiffID() digest.Digest { return r.diff }
func (r *rawFile) Open(context.Context) (io.ReadCloser, error) {
	return os.Open(r.path)
}

// Uncompressed opens l and returns its tar stream.
func Uncompressed(ctx context.Context, l image.Layer) (io.ReadCloser, error) {
	rc, err := l.Open(ctx)
	if err != nil {
		return nil, err
	}
	zr, _, err := compress.Decompress(rc)
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("layer %s: %w", l.Descriptor().Digest, err)
	}
	return &closeBoth{ReadCloser: zr, under: rc}, nil
}

type closeBoth struct {
	io.ReadCloser
	under io.Closer
}

func (c *closeBoth) Close() error {
	err := c.ReadCloser.Close()
	if err2 := c.under.Close(); err == nil {
		err = err2
	}
	return err
}

// notifyWriter reports the bytes written so far after every write.
type notifyWriter struct {
	w        io.Writer
	n        int64
	progress func(int64)
}

func (n *notifyWriter) Write(p []byte) (int, error) {
	k, err := n.w.Write(p)
	n.n += int64(k)
	n.progress(n.n)
	return k, err
}

type countWriter struct {
	w io.Writer
	n *int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	*c.n += int64(n)
	return n, err
}
