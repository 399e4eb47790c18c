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

	"github.com/builder-dev/builder/content"

	"github.com/builder-dev/builder/compress"
	"github.com/builder-dev/builder/image"
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
	// SplitOnly, with Kind None and RawDir, keeps only the tar-split of the
	// tar in RawDir, not the tar: the caller has the files (a committed
	// layer tree) and sets Stored.Tree, from which Open reassembles the tar
	// byte for byte. A store commit that moves the tree needs nothing else.
	SplitOnly bool
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
// computing diff_id and digest in the same pass. With c.RawDir the tar is
// also (or, uncompressed, only) kept in a scratch file there.
func Write(ctx context.Context, blobs *content.Store, c Compression, produce func(w io.Writer) error) (image.Layer, error) {
	scratchOnly := c.Kind == compress.None && c.RawDir != ""
	splitOnly := scratchOnly && c.SplitOnly
	diffHash := sha256.New()
	sinks := []io.Writer{diffHash}
	var raw *os.File
	var split *splitSink
	defer func() {
		if split != nil { // not handed over: a failed layer
			split.finish(false)
		}
	}()
	if c.RawDir != "" {
		var err error
		if raw, err = os.CreateTemp(c.RawDir, "layer-*.tar"); err != nil {
			return nil, err
		}
		defer func() {
			if raw != nil { // not handed over: a failed layer
				raw.Close()
				os.Remove(raw.Name())
			}
		}()
		if !splitOnly {
			sinks = append(sinks, raw)
		}
		if split, err = newSplitSink(raw.Name() + ".tar-split"); err == nil {
			sinks = append(sinks, split)
		} else if splitOnly {
			return nil, err
		}
	}
	var (
		ing     *content.Ingester
		zw      io.WriteCloser = nopCloser{}
		teeDone                = func(error) {}
	)
	if !scratchOnly {
		var err error
		if ing, err = blobs.Ingest(); err != nil {
			return nil, err
		}
		defer ing.Close()
		out := io.Writer(ing)
		if c.Follow != nil && c.Kind != compress.None {
			progress, done := c.Follow(ing.Name())
			out, teeDone = &notifyWriter{w: ing, progress: progress}, done
		}
		if zw, err = compress.NewWriter(out, c.Kind, c.Level); err != nil {
			teeDone(err)
			return nil, err
		}
		sinks = append(sinks, zw)
	}
	finished := false
	defer func() {
		if !finished {
			teeDone(errors.New("layer not written"))
		}
	}()
	// Tar writers make three small writes per file; a syscall for each
	// would cost more than the file on a layer of many small files.
	var size int64
	bw := bufio.NewWriterSize(io.MultiWriter(sinks...), 1<<20)
	if err := produce(&countWriter{w: bw, n: &size}); err != nil {
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
	diffID := digest.NewDigest(digest.SHA256, diffHash)
	st := &Stored{Diff: diffID, TarLen: size,
		Desc: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: diffID, Size: size}}
	if !scratchOnly {
		d, n, err := ing.Commit("")
		if err != nil {
			return nil, err
		}
		st.Blobs, st.Desc = blobs, ocispec.Descriptor{MediaType: c.MediaType(), Digest: d, Size: n}
	}
	if raw != nil {
		if err := raw.Close(); err != nil {
			return nil, err
		}
		st.Raw, raw = raw.Name(), nil
		if split != nil {
			st.Split, split = split.finish(true), nil
		}
		if splitOnly {
			os.Remove(st.Raw)
			st.Raw = ""
			if st.Split == nil {
				return nil, errors.New("layer tar-split could not be made")
			}
		}
	}
	finished = true
	teeDone(nil)
	return st, nil
}

type nopCloser struct{}

func (nopCloser) Write(p []byte) (int, error) { return len(p), nil }
func (nopCloser) Close() error                { return nil }

// Stored is a layer whose blob lives in the local blob store.
type Stored struct {
	Blobs  *content.Store
	Desc   ocispec.Descriptor
	Diff   digest.Digest
	TarLen int64 // uncompressed size, when known
	// Raw is a scratch file holding the uncompressed tar (see
	// Compression.RawDir), or empty.
	Raw string
	// Split is the tar-split of Raw, made while it was written (nil when
	// there is no Raw or it could not be made).
	Split *TarSplit
	// Tree, for a layer kept as a tree and its tar-split (SplitOnly), says
	// where the tree is now (it may move into the image store).
	Tree func() (dir string, ok bool)
}

func (l *Stored) Descriptor() ocispec.Descriptor { return l.Desc }
func (l *Stored) DiffID() digest.Digest          { return l.Diff }
func (l *Stored) Open(context.Context) (io.ReadCloser, error) {
	if l.Blobs == nil && l.Raw == "" && l.Split != nil && l.Tree != nil {
		return l.Split.Assemble(l.Tree) // a tree and its tar-split (SplitOnly)
	}
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

// RawForm returns the layer as its uncompressed tar when a scratch copy of
// it exists (Stored.Raw), for destinations that would only decompress it.
func RawForm(l image.Layer) (image.Layer, bool) {
	st, ok := l.(*Stored)
	if !ok || st.Raw == "" || st.TarLen <= 0 {
		return l, false
	}
	return &Stored{Desc: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: st.Diff, Size: st.TarLen},
		Diff: st.Diff, TarLen: st.TarLen, Raw: st.Raw, Split: st.Split}, true
}

// ErrTooLarge is wrapped when a layer's tar is longer than its limit.
var ErrTooLarge = errors.New("layer larger than --max-layer-size uncompressed")

// UncompressedLimit is Uncompressed that fails with ErrTooLarge once the
// tar passes max bytes (max <= 0: no limit): a gzip bomb stops there.
func UncompressedLimit(ctx context.Context, l image.Layer, max int64) (io.ReadCloser, error) {
	rc, err := Uncompressed(ctx, l)
	if err != nil {
		return rc, err
	}
	return Limit(rc, max, "layer "+l.Descriptor().Digest.String()), nil
}

// Limit fails reads of rc with ErrTooLarge once max bytes have passed
// (max <= 0: no limit); what names the stream in the error.
func Limit(rc io.ReadCloser, max int64, what string) io.ReadCloser {
	if max <= 0 {
		return rc
	}
	return &limited{ReadCloser: rc, left: max, max: max, what: what}
}

type limited struct {
	io.ReadCloser
	left, max int64
	what      string
}

func (r *limited) Read(p []byte) (int, error) {
	if int64(len(p)) > r.left+1 {
		p = p[:r.left+1]
	}
	n, err := r.ReadCloser.Read(p)
	r.left -= int64(n)
	if r.left < 0 {
		return n, fmt.Errorf("%s: %w (%d bytes)", r.what, ErrTooLarge, r.max)
	}
	return n, err
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
