package pushers

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/builder-dev/builder/content"

	"github.com/builder-dev/builder/compress"
	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/image/imagetest"
	"github.com/builder-dev/builder/layer"
	"github.com/builder-dev/builder/registry"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// wrongDiff is a layer whose diff ID lies.
type wrongDiff struct{ image.Layer }

func (wrongDiff) DiffID() digest.Digest { return digest.FromString("not this") }

func TestCompressLayersOnce(t *testing.T) {
	ctx := context.Background()
	blobs, err := content.OpenStore(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := registry.OpenVariants(filepath.Join(t.TempDir(), "variants"), blobs)
	if err != nil {
		t.Fatal(err)
	}
	count := func() int {
		ents, _ := os.ReadDir(filepath.Dir(blobs.Path(digest.FromString(""))))
		return len(ents)
	}
	plain := imagetest.MustLayer(image.Uncompressed, imagetest.File{Name: "a", Body: strings.Repeat("a", 5000)})
	gz := imagetest.MustLayer(image.Gzip, imagetest.File{Name: "b", Body: "b"})
	// A gzip layer whose blob is in the store (as bud writes them).
	st, err := layer.Write(ctx, blobs, layer.Compression{Kind: compress.Gzip}, func(w io.Writer) error {
		_, err := w.Write(mustTar(t, "c"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	img := imagetest.NewImage(ocispec.Platform{OS: "linux", Architecture: "amd64"}, plain, gz, st)

	first, err := compressLayers(ctx, img, image.FormatOCI, Compression{}, v)
	if err != nil {
		t.Fatal(err)
	}
	d := first.Layers[0].Descriptor()
	if d.MediaType != ocispec.MediaTypeImageLayerGzip || first.Layers[1] != image.Layer(gz) || first.Layers[2] != st {
		t.Fatalf("first pass: %+v", first.Layers)
	}
	if _, ok := v.Lookup(st.DiffID(), compress.Gzip); !ok {
		t.Error("a stored gzip layer was not recorded")
	}
	n := count()
	for range 2 { // later pushes reuse the blob: nothing new in the store
		again, err := compressLayers(ctx, img, image.FormatDocker, Compression{}, v)
		if err != nil {
			t.Fatal(err)
		}
		if again.Layers[0].Descriptor().Digest != d.Digest || count() != n {
			t.Errorf("compressed again: %s (blobs %d -> %d)", again.Layers[0].Descriptor().Digest, n, count())
		}
	}
	if err := imagetest.Verify(ctx, first); err != nil {
		t.Fatal(err)
	}

	z, err := compressLayers(ctx, img, image.FormatOCI, Compression{Kind: compress.Zstd, Force: true}, v)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range z.Layers {
		if l.Descriptor().MediaType != ocispec.MediaTypeImageLayerZstd || l.DiffID() != img.Layers[i].DiffID() {
			t.Errorf("forced zstd, layer %d: %+v", i, l.Descriptor())
		}
	}
	if err := imagetest.Verify(ctx, z); err != nil {
		t.Fatal(err)
	}

	if _, err := compressLayers(ctx, img, image.FormatDocker, Compression{Kind: compress.Zstd}, v); err == nil {
		t.Error("zstd in docker format accepted")
	}
	bad := imagetest.NewImage(ocispec.Platform{}, wrongDiff{imagetest.MustLayer(image.Uncompressed, imagetest.File{Name: "x"})})
	if _, err := compressLayers(ctx, bad, image.FormatOCI, Compression{}, v); err == nil || !strings.Contains(err.Error(), "diff ID") {
		t.Errorf("lying diff ID: %v", err)
	}
}

func mustTar(t *testing.T, body string) []byte {
	b, err := imagetest.Tar(imagetest.File{Name: "f", Body: body})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
