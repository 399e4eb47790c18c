package pushers_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/image/imagetest"
	"github.com/builder-dev/builder/internal/store"
	"github.com/builder-dev/builder/internal/store/storetest"
	"github.com/builder-dev/builder/pushers"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// testImage has a gzip layer and an uncompressed layer, so pushes exercise
// both media types.
func testImage(t *testing.T) *image.Image {
	t.Helper()
	l1 := imagetest.MustLayer(image.Gzip,
		imagetest.File{Name: "etc/", Type: '5'},
		imagetest.File{Name: "etc/hello", Body: "hello from layer 1\n"},
		imagetest.File{Name: "bin/", Type: '5'},
		imagetest.File{Name: "bin/tool", Body: "#!/bin/sh\necho tool\n", Mode: 0o755},
	)
	l2 := imagetest.MustLayer(image.Uncompressed,
		imagetest.File{Name: "app/", Type: '5'},
		imagetest.File{Name: "app/data", Body: "layer 2 data\n", UID: 1000, GID: 1000},
		imagetest.File{Name: "etc/.wh.hello"},
	)
	img := imagetest.NewImage(ocispec.Platform{}, l1, l2)
	if err := imagetest.Verify(context.Background(), img); err != nil {
		t.Fatal(err)
	}
	return img
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr)
	}
	return out
}

type skopeoInspect struct {
	Digest       digest.Digest
	Architecture string
	Os           string
	Layers       []digest.Digest
	LayersData   []struct{ MIMEType string }
}

func inspect(t *testing.T, ref string) skopeoInspect {
	t.Helper()
	return inspectArgs(t, ref)
}

func inspectArgs(t *testing.T, args ...string) skopeoInspect {
	t.Helper()
	var si skopeoInspect
	if err := json.Unmarshal(run(t, "skopeo", append([]string{"inspect"}, args...)...), &si); err != nil {
		t.Fatal(err)
	}
	return si
}

func digestOf(b []byte) string { return digest.FromBytes(b).String() }

func configID(t *testing.T, img *image.Image) digest.Digest {
	t.Helper()
	id, err := img.ID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestPushOCILayout(t *testing.T) {
	ctx := context.Background()
	img := testImage(t)
	for _, f := range []image.Format{image.FormatOCI, image.FormatDocker} { // a layout always gets OCI
		t.Run(f.String(), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "layout")
			d, err := pushers.Push(ctx, img, "oci:"+dir+":v1", pushers.Options{Format: f, Sys: storetest.Sys(t)})
			if err != nil {
				t.Fatal(err)
			}
			raw := run(t, "skopeo", "inspect", "--raw", "oci:"+dir+":v1")
			if got := digest.FromBytes(raw); got != d {
				t.Errorf("returned digest %s, layout manifest is %s", d, got)
			}
			var m ocispec.Manifest
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			if m.MediaType != ocispec.MediaTypeImageManifest || m.Config.Digest != configID(t, img) {
				t.Errorf("manifest %s", raw)
			}
			for i, l := range m.Layers {
				if l.MediaType != ocispec.MediaTypeImageLayerGzip {
					t.Errorf("layer %d media type %s: the OCI layout destination compresses", i, l.MediaType)
				}
			}
			si := inspect(t, "oci:"+dir+":v1")
			if si.Architecture != "amd64" || si.Os != "linux" || len(si.Layers) != 2 || si.Layers[0] != img.Layers[0].Descriptor().Digest {
				t.Errorf("skopeo inspect: %+v", si)
			}
			cfg := run(t, "skopeo", "inspect", "--raw", "--config", "oci:"+dir+":v1")
			for _, want := range []string{`"Healthcheck":`, `"OnBuild":`, `"Shell":`} {
				if !strings.Contains(string(cfg), want) {
					t.Errorf("config lacks %s: %s", want, cfg)
				}
			}

			bundle := filepath.Join(t.TempDir(), "bundle")
			run(t, "umoci", "unpack", "--rootless", "--image", dir+":v1", bundle)
			data, err := os.ReadFile(filepath.Join(bundle, "rootfs", "app", "data"))
			if err != nil || string(data) != "layer 2 data\n" {
				t.Errorf("app/data = %q, %v", data, err)
			}
			if _, err := os.Lstat(filepath.Join(bundle, "rootfs", "etc", "hello")); !os.IsNotExist(err) {
				t.Errorf("etc/hello should be whited out: %v", err)
			}
			if b, err := os.ReadFile(filepath.Join(bundle, "rootfs", "bin", "tool")); err != nil || !strings.Contains(string(b), "echo tool") {
				t.Errorf("bin/tool = %q, %v", b, err)
			}
		})
	}
}

func TestPushDockerArchive(t *testing.T) {
	ctx := context.Background()
	img := testImage(t)
	file := filepath.Join(t.TempDir(), "img.tar")
	if _, err := pushers.Push(ctx, img, "docker-archive:"+file+":example.com/app:v1", pushers.Options{Sys: storetest.Sys(t)}); err != nil {
		t.Fatal(err)
	}
	si := inspect(t, "docker-archive:"+file)
	if si.Architecture != "amd64" || len(si.Layers) != 2 {
		t.Errorf("skopeo inspect: %+v", si)
	}
	for i, l := range si.LayersData {
		if !strings.HasPrefix(l.MIMEType, "application/vnd.docker.image.rootfs.diff.tar") {
			t.Errorf("layer %d: %s", i, l.MIMEType)
		}
	}
	raw := run(t, "skopeo", "inspect", "--raw", "--config", "docker-archive:"+file)
	if got := digest.FromBytes(raw); got != configID(t, img) {
		t.Errorf("config digest %s, want %s", got, configID(t, img))
	}
}

func TestPushStore(t *testing.T) {
	ctx := context.Background()
	s, so := storetest.New(t)
	sys := storetest.Sys(t)
	img := testImage(t)
	id := configID(t, img)

	for _, f := range []image.Format{image.FormatDocker, image.FormatOCI} {
		d, err := pushers.Push(ctx, img, "app:v1", pushers.Options{Store: s, Format: f, Sys: sys, Tags: []string{"app:latest", "quay.io/team/app:v2"}})
		if err != nil {
			t.Fatal(err)
		}
		want, _, _ := img.Manifest(f)
		if d != digest.FromBytes(want) {
			t.Errorf("%s: pushed digest %s, manifest digest %s", f, d, digest.FromBytes(want))
		}
		si, err := store.Inspect(s, "app:v1")
		if err != nil {
			t.Fatal(err)
		}
		if si.ID != id.Encoded() {
			t.Errorf("image ID %s, want the config digest %s", si.ID, id.Encoded())
		}
		if si.ManifestType != f.ManifestMediaType() {
			t.Errorf("manifest type %s, want %s", si.ManifestType, f.ManifestMediaType())
		}
		wantNames := []string{"localhost/app:v1", "localhost/app:latest", "quay.io/team/app:v2"}
		if !sameSet(si.Names, wantNames) {
			t.Errorf("names %v, want %v", si.Names, wantNames)
		}
	}

	// skopeo sees the image through the same store.
	spec := "containers-storage:[vfs@" + so.Root + "+" + so.RunRoot + "]localhost/app:v1"
	if si := inspect(t, spec); len(si.Layers) != 2 || si.Architecture != "amd64" {
		t.Errorf("skopeo inspect %s: %+v", spec, si)
	}

	// A second image takes over a name; the first keeps its other names.
	img2 := imagetest.NewImage(ocispec.Platform{}, imagetest.MustLayer(image.Gzip, imagetest.File{Name: "x", Body: "2"}))
	if _, err := pushers.Push(ctx, img2, "containers-storage:app:latest", pushers.Options{Store: s, Sys: sys}); err != nil {
		t.Fatal(err)
	}
	got, err := store.LookupImage(s, "app")
	if err != nil || got.ID != configID(t, img2).Encoded() {
		t.Fatalf("app -> %v, %v; want the second image", got, err)
	}
	first, err := store.LookupImage(s, id.Encoded())
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(first.Names, "localhost/app:latest") || !slices.Contains(first.Names, "localhost/app:v1") {
		t.Errorf("first image names %v", first.Names)
	}

	// Unnamed pushes, with and without the ID spelled out.
	for i, dest := range []string{"", "containers-storage:@"} {
		img3 := imagetest.NewImage(ocispec.Platform{}, imagetest.MustLayer(image.Gzip, imagetest.File{Name: "y", Body: string(rune('0' + i))}))
		id := configID(t, img3).Encoded()
		if dest != "" {
			dest += id
		}
		if _, err := pushers.Push(ctx, img3, dest, pushers.Options{Store: s, Sys: sys}); err != nil {
			t.Fatal(err)
		}
		if got, err := store.LookupImage(s, id[:12]); err != nil || len(got.Names) != 0 {
			t.Errorf("unnamed image %q: %+v, %v", dest, got, err)
		}
	}

	// Tags are ignored for destinations other than the store (so one
	// Options value serves every output of a build).
	dir := filepath.Join(t.TempDir(), "layout")
	if _, err := pushers.Push(ctx, img, "oci:"+dir, pushers.Options{Store: s, Sys: sys, Tags: []string{"ignored"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.LookupImage(s, "ignored"); err == nil {
		t.Error("tags were applied for an oci: destination")
	}
}

func TestPushErrors(t *testing.T) {
	ctx := context.Background()
	s, _ := storetest.New(t)
	img := testImage(t)
	zimg := imagetest.NewImage(ocispec.Platform{}, imagetest.MustLayer(image.Zstd, imagetest.File{Name: "z", Body: "z"}))
	dir := t.TempDir()
	tests := []struct {
		name    string
		img     *image.Image
		dest    string
		opts    pushers.Options
		wantErr string
	}{
		{"zstd-docker", zimg, "app:z", pushers.Options{Store: s, Format: image.FormatDocker}, "zstd"},
		{"zstd-docker-archive", zimg, "docker-archive:" + filepath.Join(dir, "z.tar"), pushers.Options{}, "zstd"},
		{"wrong-id", img, "containers-storage:@" + strings.Repeat("c", 64), pushers.Options{Store: s}, "the image ID is its config digest"},
		{"no-store", img, "app:v1", pushers.Options{}, "no local store"},
		{"digest-name", img, "app@sha256:" + strings.Repeat("a", 64), pushers.Options{Store: s}, "cannot be named with a digest"},
		{"bad-name", img, "UPPER:v1", pushers.Options{Store: s}, "invalid image name"},
		{"unsupported-transport", img, "dir:" + dir, pushers.Options{}, "unsupported transport"},
		{"store-spec", img, "containers-storage:[vfs@/x]app", pushers.Options{Store: s}, "store specifiers are not supported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pushers.Push(ctx, tc.img, tc.dest, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// Layers are put into the store under the chain IDs containers/image uses,
// so its copy reuses them: one layer per diff ID, the image on top of them.
func TestPushStoreLayersPreloaded(t *testing.T) {
	ctx := context.Background()
	s, _ := storetest.New(t)
	img := testImage(t)
	if _, err := pushers.Push(ctx, img, "app:v1", pushers.Options{Store: s, Format: image.FormatOCI, Sys: storetest.Sys(t)}); err != nil {
		t.Fatal(err)
	}
	parent := ""
	for _, l := range img.Layers {
		id := l.DiffID().Encoded()
		if parent != "" {
			id = digest.Canonical.FromString(parent + "+" + l.DiffID().Encoded()).Encoded()
		}
		sl, err := s.Layer(id)
		if err != nil {
			t.Fatalf("no store layer %s for diff ID %s: %v", id, l.DiffID(), err)
		}
		if sl.Parent != parent || sl.UncompressedDigest != l.DiffID() {
			t.Errorf("layer %s: parent %q, uncompressed %s", id, sl.Parent, sl.UncompressedDigest)
		}
		parent = id
	}
	layers, err := s.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != len(img.Layers) {
		t.Errorf("%d layers in the store, want %d (containers/image made its own copies)", len(layers), len(img.Layers))
	}
	si, err := store.Inspect(s, "app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Image(si.ID); got == nil || got.TopLayer != parent {
		t.Errorf("image top layer %v, want %s", got, parent)
	}
}

// Committing an image the store already holds (same manifest) only moves
// names: another image that took the name gives it back.
func TestPushStoreAgainMovesNames(t *testing.T) {
	ctx := context.Background()
	s, _ := storetest.New(t)
	sys := storetest.Sys(t)
	a := testImage(t)
	b := *a
	b.Config.Config.Labels = map[string]string{"other": "image"}
	for _, step := range []struct {
		img  *image.Image
		name string
	}{{a, "app:v1"}, {&b, "app:v1"}, {a, "app:v1"}} {
		if _, err := pushers.Push(ctx, step.img, step.name, pushers.Options{Store: s, Format: image.FormatOCI, Sys: sys}); err != nil {
			t.Fatal(err)
		}
	}
	si, err := store.Inspect(s, "app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if si.ID != configID(t, a).Encoded() {
		t.Errorf("app:v1 is %s, want the first image %s again", si.ID, configID(t, a).Encoded())
	}
	imgs, _ := s.Images()
	if len(imgs) != 2 {
		t.Errorf("%d images in the store, want 2", len(imgs))
	}
}
