package pushers_test

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/image/imagetest"
	"github.com/builder-dev/builder/internal/store/storetest"
	"github.com/builder-dev/builder/platform"
	"github.com/builder-dev/builder/pushers"
	"github.com/google/go-containerregistry/pkg/registry"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/types"
)

// TestPushRegistry pushes to an in-process registry (the Distribution API
// of go-containerregistry's pkg/registry) and reads the image back with
// skopeo and with the resolver.
func TestPushRegistry(t *testing.T) {
	ctx := context.Background()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	sys := storetest.Sys(t)
	sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue // plain HTTP
	// A registry gets compressed layers: the uncompressed second layer of
	// testImage is gzipped on the way, so the manifest changes. An image
	// whose layers are all gzip is pushed byte for byte.
	mixed := testImage(t)
	gzipped := imagetest.NewImage(ocispec.Platform{}, mixed.Layers[0],
		imagetest.MustLayer(image.Gzip, imagetest.File{Name: "second", Body: "2"}))

	for _, f := range []image.Format{image.FormatOCI, image.FormatDocker} {
		t.Run(f.String(), func(t *testing.T) {
			exact := "docker://" + host + "/team/exact:" + f.String()
			d, err := pushers.Push(ctx, gzipped, exact, pushers.Options{Format: f, Sys: sys})
			if err != nil {
				t.Fatal(err)
			}
			want, _, _ := gzipped.Manifest(f)
			if d.String() != digestOf(want) {
				t.Errorf("pushed %s, manifest digest %s", d, digestOf(want))
			}

			ref := "docker://" + host + "/team/app:" + f.String()
			if d, err = pushers.Push(ctx, mixed, ref, pushers.Options{Format: f, Sys: sys}); err != nil {
				t.Fatal(err)
			}
			si := inspectArgs(t, "--tls-verify=false", ref)
			if si.Digest != d || len(si.Layers) != 2 {
				t.Errorf("skopeo inspect: %+v", si)
			}

			r := &image.Resolver{Sys: sys}
			defer r.Close()
			got, err := r.Resolve(ctx, ref, platform.Platform{OS: "linux", Architecture: "amd64"})
			if err != nil {
				t.Fatal(err)
			}
			if got.ManifestDigest != d {
				t.Errorf("resolved manifest %s, pushed %s", got.ManifestDigest, d)
			}
			if err := imagetest.Verify(ctx, got); err != nil {
				t.Fatal(err)
			}
			gz, _ := image.LayerMediaType(ocispec.MediaTypeImageLayerGzip, f)
			for i, l := range got.Layers {
				if l.Descriptor().MediaType != gz || l.DiffID() != mixed.Layers[i].DiffID() {
					t.Errorf("layer %d: %+v diff ID %s", i, l.Descriptor(), l.DiffID())
				}
			}
		})
	}
}
