package image_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/image/imagetest"
	"github.com/builder-dev/builder/internal/store/storetest"
	"github.com/builder-dev/builder/platform"
	"github.com/builder-dev/builder/pushers"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// layoutWriter writes an OCI image layout by hand, so the resolver is
// tested against files no containers/image code produced.
type layoutWriter struct {
	t   *testing.T
	dir string
}

func newLayout(t *testing.T) *layoutWriter {
	dir := filepath.Join(t.TempDir(), "layout")
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ocispec.ImageLayoutFile), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return &layoutWriter{t: t, dir: dir}
}

func (w *layoutWriter) blob(b []byte) digest.Digest {
	d := digest.FromBytes(b)
	if err := os.WriteFile(filepath.Join(w.dir, "blobs", "sha256", d.Encoded()), b, 0o644); err != nil {
		w.t.Fatal(err)
	}
	return d
}

// image writes img's blobs and manifest and returns the manifest descriptor.
func (w *layoutWriter) image(img *image.Image, p *ocispec.Platform) ocispec.Descriptor {
	man, cfg, err := img.Manifest(image.FormatOCI)
	if err != nil {
		w.t.Fatal(err)
	}
	w.blob(cfg)
	for _, l := range img.Layers {
		w.blob(l.(*imagetest.Layer).Blob())
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: w.blob(man), Size: int64(len(man)), Platform: p}
}

func (w *layoutWriter) index(manifests ...ocispec.Descriptor) ocispec.Descriptor {
	b, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: manifests})
	if err != nil {
		w.t.Fatal(err)
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: w.blob(b), Size: int64(len(b))}
}

// tagged returns d annotated with the layout tag name.
func tagged(d ocispec.Descriptor, name string) ocispec.Descriptor {
	d.Annotations = map[string]string{ocispec.AnnotationRefName: name}
	return d
}

func (w *layoutWriter) writeIndex(manifests ...ocispec.Descriptor) {
	b, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: manifests})
	if err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.dir, ocispec.ImageIndexFile), b, 0o644); err != nil {
		w.t.Fatal(err)
	}
}

func platformImage(arch, variant, marker string) *image.Image {
	p := ocispec.Platform{OS: "linux", Architecture: arch, Variant: variant}
	return imagetest.NewImage(p,
		imagetest.MustLayer(image.Gzip, imagetest.File{Name: "arch", Body: marker}),
		imagetest.MustLayer(image.Uncompressed, imagetest.File{Name: "second", Body: marker + "2"}),
	)
}

func TestResolveOCILayout(t *testing.T) {
	ctx := context.Background()
	w := newLayout(t)
	amd := platformImage("amd64", "", "amd64")
	arm := platformImage("arm64", "v8", "arm64")
	amdDesc := w.image(amd, &ocispec.Platform{OS: "linux", Architecture: "amd64"})
	armDesc := w.image(arm, &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"})
	multi := w.index(amdDesc, armDesc)
	single := amdDesc
	single.Platform = nil
	w.writeIndex(tagged(multi, "multi"), tagged(single, "single"))

	r := &image.Resolver{Sys: storetest.Sys(t)}
	defer r.Close()
	tests := []struct {
		name     string
		ref      string
		platform platform.Platform
		want     *image.Image
		wantMan  digest.Digest
		wantErr  string
	}{
		{name: "index-amd64", ref: "oci:" + w.dir + ":multi", platform: platform.Platform{OS: "linux", Architecture: "amd64"}, want: amd, wantMan: amdDesc.Digest},
		{name: "index-arm64", ref: "oci:" + w.dir + ":multi", platform: platform.Platform{OS: "linux", Architecture: "arm64"}, want: arm, wantMan: armDesc.Digest},
		{name: "index-arm64-v8", ref: "oci:" + w.dir + ":multi", platform: platform.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, want: arm, wantMan: armDesc.Digest},
		{name: "index-missing", ref: "oci:" + w.dir + ":multi", platform: platform.Platform{OS: "linux", Architecture: "s390x"}, wantErr: "has no image for linux/s390x; its index has linux/amd64, linux/arm64"},
		{name: "single", ref: "oci:" + w.dir + ":single", platform: platform.Platform{OS: "linux", Architecture: "amd64"}, want: amd, wantMan: amdDesc.Digest},
		{name: "single-other-platform", ref: "oci:" + w.dir + ":single", platform: platform.Platform{OS: "linux", Architecture: "arm64"}, wantErr: ":single is for linux/amd64, not linux/arm64"},
		{name: "no-tag", ref: "oci:" + w.dir + ":nope", wantErr: "nope"},
		{name: "bad-transport-ref", ref: "docker-archive:", wantErr: "docker-archive"},
		{name: "plain-no-store", ref: "alpine", wantErr: "no local store"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.Resolve(ctx, tc.ref, tc.platform)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.ManifestDigest != tc.wantMan {
				t.Errorf("manifest digest %s, want %s", got.ManifestDigest, tc.wantMan)
			}
			if err := imagetest.Verify(ctx, got); err != nil {
				t.Fatal(err)
			}
			sameImage(t, got, tc.want)
		})
	}
	// --platform-mismatch=warn: the image of another platform is used.
	warn := &image.Resolver{Sys: storetest.Sys(t), Mismatch: image.MismatchWarn}
	defer warn.Close()
	got, err := warn.Resolve(ctx, "oci:"+w.dir+":single", platform.Platform{OS: "linux", Architecture: "arm64"})
	if err != nil || got.ManifestDigest != amdDesc.Digest {
		t.Fatalf("warn: %v, %v", err, got)
	}
}

// sameImage checks that got has want's config (byte for byte once
// rendered) and layers.
func sameImage(t *testing.T, got, want *image.Image) {
	t.Helper()
	_, gotCfg, err := got.Manifest(image.FormatOCI)
	if err != nil {
		t.Fatal(err)
	}
	_, wantCfg, _ := want.Manifest(image.FormatOCI)
	if string(gotCfg) != string(wantCfg) {
		t.Errorf("config\n got %s\nwant %s", gotCfg, wantCfg)
	}
	if got.Config.Config.Healthcheck == nil || len(got.Config.Config.OnBuild) == 0 || len(got.Config.Config.Shell) == 0 {
		t.Errorf("Docker config extensions lost: %+v", got.Config.Config)
	}
	if len(got.Layers) != len(want.Layers) {
		t.Fatalf("%d layers, want %d", len(got.Layers), len(want.Layers))
	}
	for i := range got.Layers {
		if got.Layers[i].DiffID() != want.Layers[i].DiffID() {
			t.Errorf("layer %d diff ID %s, want %s", i, got.Layers[i].DiffID(), want.Layers[i].DiffID())
		}
	}
}

func TestResolveStoreAndArchives(t *testing.T) {
	ctx := context.Background()
	s, _ := storetest.New(t)
	sys := storetest.Sys(t)
	img := platformImage("amd64", "", "stored")
	pushed, err := pushers.Push(ctx, img, "app:v1", pushers.Options{Store: s, Sys: sys})
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "img.tar")
	if _, err := pushers.Push(ctx, img, "docker-archive:"+archive+":example.com/app:v1", pushers.Options{Sys: sys}); err != nil {
		t.Fatal(err)
	}
	ociArchive := filepath.Join(t.TempDir(), "img-oci.tar")
	if _, err := pushers.Push(ctx, img, "oci-archive:"+ociArchive+":v1", pushers.Options{Sys: sys}); err != nil {
		t.Fatal(err)
	}

	r := &image.Resolver{Store: s, Sys: sys}
	amd64 := platform.Platform{OS: "linux", Architecture: "amd64"}
	for _, ref := range []string{"app:v1", "localhost/app:v1", "containers-storage:app:v1", "containers-storage:" + mustID(t, img)[:12]} {
		t.Run(ref, func(t *testing.T) {
			got, err := r.Resolve(ctx, ref, amd64)
			if err != nil {
				t.Fatal(err)
			}
			if got.ManifestDigest != pushed {
				t.Errorf("manifest digest %s, pushed %s", got.ManifestDigest, pushed)
			}
			for i, l := range got.Layers {
				d := l.Descriptor()
				// containers-storage serves uncompressed layers, whatever the manifest says.
				if d.MediaType != ocispec.MediaTypeImageLayer || d.Digest != l.DiffID() {
					t.Errorf("layer %d: %+v (diff ID %s)", i, d, l.DiffID())
				}
			}
			if err := imagetest.Verify(ctx, got); err != nil {
				t.Fatal(err)
			}
			sameImage(t, got, img)
		})
	}
	for _, ref := range []string{"docker-archive:" + archive, "docker-archive:" + archive + ":example.com/app:v1", "oci-archive:" + ociArchive + ":v1"} {
		t.Run(ref, func(t *testing.T) {
			got, err := r.Resolve(ctx, ref, amd64)
			if err != nil {
				t.Fatal(err)
			}
			if err := imagetest.Verify(ctx, got); err != nil {
				t.Fatal(err)
			}
			sameImage(t, got, img)
		})
	}

	// A resolved image can be pushed again: from the store to a layout, and
	// back into the store under another name, keeping its ID.
	got, err := r.Resolve(ctx, "app:v1", amd64)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	if _, err := pushers.Push(ctx, got, "oci:"+dir+":again", pushers.Options{Sys: sys}); err != nil {
		t.Fatal(err)
	}
	again, err := r.Resolve(ctx, "oci:"+dir+":again", amd64)
	if err != nil {
		t.Fatal(err)
	}
	if err := imagetest.Verify(ctx, again); err != nil {
		t.Fatal(err)
	}
	if _, err := pushers.Push(ctx, got, "copy:v1", pushers.Options{Store: s, Sys: sys}); err != nil {
		t.Fatal(err)
	}
	c, err := r.Resolve(ctx, "copy:v1", amd64)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := c.ID(); id.Encoded() != mustID(t, img) {
		t.Errorf("re-stored image ID %s, want %s", id, mustID(t, img))
	}

	_, err = r.Resolve(ctx, "nothere:v1", amd64)
	if !errors.Is(err, image.ErrNotKnownLocally) || !strings.Contains(err.Error(), "nothere:v1") {
		t.Errorf("unknown plain name: %v", err)
	}
	_, err = r.Resolve(ctx, "containers-storage:nothere", amd64)
	if err == nil || !strings.Contains(err.Error(), "image not known: nothere") {
		t.Errorf("unknown containers-storage name: %v", err)
	}

	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Resolve(ctx, "app:v1", amd64); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Resolve after Close: %v", err)
	}
}

func mustID(t *testing.T, img *image.Image) string {
	t.Helper()
	id, err := img.ID()
	if err != nil {
		t.Fatal(err)
	}
	return id.Encoded()
}

// corruptLayer serves the wrong bytes: Open of a resolved layer must fail.
func TestResolveVerifiesBlobs(t *testing.T) {
	ctx := context.Background()
	w := newLayout(t)
	img := platformImage("amd64", "", "x")
	w.writeIndex(tagged(w.image(img, nil), "v1"))
	d := img.Layers[0].Descriptor().Digest
	blob := filepath.Join(w.dir, "blobs", "sha256", d.Encoded())
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0xff
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r := &image.Resolver{Sys: storetest.Sys(t)}
	defer r.Close()
	got, err := r.Resolve(ctx, "oci:"+w.dir+":v1", platform.Platform{OS: "linux", Architecture: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	err = imagetest.Verify(ctx, got)
	if err == nil || !strings.Contains(err.Error(), "does not match its digest") {
		t.Fatalf("Verify of a corrupt layer: %v", err)
	}
	if !slices.Contains([]digest.Digest{d}, got.Layers[0].Descriptor().Digest) {
		t.Error("descriptor changed")
	}
}
