package pushers

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/builder-dev/builder/compress"
	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/layer"
	"github.com/builder-dev/builder/registry"
	digest "github.com/opencontainers/go-digest"
)

// Compression chooses the compression of layers compressed for a push.
type Compression struct {
	Kind  compress.Kind // compress.Gzip (default when None) or compress.Zstd
	Level int           // 0: the compressor's default
	// Force sends every layer in Kind, recompressing layers compressed
	// otherwise (--compression given explicitly). Without it a layer
	// already compressed in any format the manifest format allows is sent
	// as it is.
	Force bool
}

func (c Compression) kind() compress.Kind {
	if c.Kind == compress.None {
		return compress.Gzip
	}
	return c.Kind
}

// maxCompressors bounds layers compressed at once (pgzip is itself parallel).
const maxCompressors = 3

// compressLayers returns img with every layer in a compressed form that
// format allows, each compressed at most once in its life: a layer
// already compressed is kept (and recorded under its diff ID when its blob
// is in the store), an uncompressed one is replaced by the blob recorded
// for its diff ID, and only a layer with neither is compressed now, into
// the blob store, and recorded for every later push or export.
func compressLayers(ctx context.Context, img *image.Image, format image.Format, c Compression, v *registry.Variants) (*image.Image, error) {
	want := c.kind()
	if format == image.FormatDocker && want == compress.Zstd {
		return nil, errors.New("zstd compression needs the oci format (docker schema 2 has no zstd layers)")
	}
	out := *img
	out.Layers = append([]image.Layer(nil), img.Layers...)
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, maxCompressors)
		mu   sync.Mutex
		errs []error
	)
	for i, l := range img.Layers {
		desc := l.Descriptor()
		have := registry.KindOf(desc.MediaType)
		if _, err := image.LayerCompression(desc.MediaType); err != nil || isForeign(desc.MediaType) {
			continue // unknown or non-distributable: leave it to the transport
		}
		keep := have != compress.None && (have == want || !c.Force) && !(format == image.FormatDocker && have == compress.Zstd)
		if keep {
			if _, err := v.Blobs.Stat(desc.Digest); err == nil {
				if err := v.Record(l.DiffID(), desc); err != nil {
					return nil, err
				}
			}
			continue
		}
		if d, ok := v.Lookup(l.DiffID(), want); ok {
			out.Layers[i] = &layer.Stored{Blobs: v.Blobs, Desc: d, Diff: l.DiffID()}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			nl, err := compressLayer(ctx, l, want, c.Level, v)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("compressing layer %d (%s): %w", i, l.DiffID(), err))
				return
			}
			out.Layers[i] = nl
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &out, nil
}

func isForeign(mediaType string) bool {
	switch mediaType {
	case image.MediaTypeDockerForeign, image.MediaTypeDockerForeignGzip:
		return true
	}
	//nolint:staticcheck // deprecated non-distributable types are still met
	return mediaType == "application/vnd.oci.image.layer.nondistributable.v1.tar" ||
		mediaType == "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" ||
		mediaType == "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
}

// compressLayer writes l's tar compressed with k into the blob store,
// checking the tar against l's diff ID on the way, and records the result.
func compressLayer(ctx context.Context, l image.Layer, k compress.Kind, level int, v *registry.Variants) (image.Layer, error) {
	rc, err := layer.Uncompressed(ctx, l)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	ing, err := v.Blobs.Ingest()
	if err != nil {
		return nil, err
	}
	defer ing.Close()
	zw, err := compress.NewWriter(ing, k, level)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(zw, h), &ctxReader{ctx: ctx, r: rc}); err != nil {
		zw.Close()
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if got := digest.NewDigest(digest.SHA256, h); got != l.DiffID() {
		return nil, fmt.Errorf("layer content has diff ID %s, the image says %s", got, l.DiffID())
	}
	d, n, err := ing.Commit("")
	if err != nil {
		return nil, err
	}
	st := &layer.Stored{Blobs: v.Blobs, Diff: l.DiffID()}
	st.Desc.MediaType = layer.Compression{Kind: k}.MediaType()
	st.Desc.Digest, st.Desc.Size = d, n
	if err := v.Record(l.DiffID(), st.Desc); err != nil {
		return nil, err
	}
	return st, nil
}

// ctxReader stops a long copy when ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
