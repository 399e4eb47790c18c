package image_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/builder-dev/builder/image"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var update = flag.Bool("update", false, "rewrite golden files")

// fakeLayer has a fixed descriptor and no blob: Manifest never reads blobs.
type fakeLayer struct {
	desc   ocispec.Descriptor
	diffID digest.Digest
}

func (l fakeLayer) Descriptor() ocispec.Descriptor { return l.desc }
func (l fakeLayer) DiffID() digest.Digest          { return l.diffID }
func (l fakeLayer) Open(context.Context) (io.ReadCloser, error) {
	return nil, errors.New("fake layer has no blob")
}

func dg(s string) digest.Digest { return digest.FromString(s) }

func layer(mt string, n string, size int64) fakeLayer {
	diff := dg("diff " + n)
	d := dg("blob " + n)
	if mt == ocispec.MediaTypeImageLayer || mt == image.MediaTypeDockerLayer {
		d = diff
	}
	return fakeLayer{desc: ocispec.Descriptor{MediaType: mt, Digest: d, Size: size}, diffID: diff}
}

func testImage(layers ...image.Layer) *image.Image {
	created := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	var cfg dockerspec.DockerOCIImage
	cfg.Created = &created
	cfg.Author = "tester"
	cfg.Platform = ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	cfg.Config.User = "1000:1000"
	cfg.Config.Env = []string{"PATH=/usr/bin:/bin", "A=<b>&c"}
	cfg.Config.Entrypoint = []string{"/app"}
	cfg.Config.Cmd = []string{"--serve"}
	cfg.Config.ExposedPorts = map[string]struct{}{"8080/tcp": {}, "53/udp": {}}
	cfg.Config.Volumes = map[string]struct{}{"/data": {}}
	cfg.Config.WorkingDir = "/srv"
	cfg.Config.Labels = map[string]string{"z": "last", "a": "first"}
	cfg.Config.StopSignal = "SIGTERM"
	cfg.Config.Healthcheck = &dockerspec.HealthcheckConfig{Test: []string{"CMD", "/app", "-health"}, Interval: 10 * time.Second, Retries: 3}
	cfg.Config.OnBuild = []string{"COPY . /src"}
	cfg.Config.Shell = []string{"/bin/bash", "-c"}
	for i := range layers {
		cfg.History = append(cfg.History, ocispec.History{Created: &created, CreatedBy: "RUN step " + string(rune('a'+i))})
	}
	cfg.History = append(cfg.History, ocispec.History{Created: &created, CreatedBy: "CMD", EmptyLayer: true})
	return &image.Image{Config: cfg, Layers: layers}
}

func TestManifest(t *testing.T) {
	gz := layer(ocispec.MediaTypeImageLayerGzip, "1", 1234)
	tarL := layer(ocispec.MediaTypeImageLayer, "2", 10240)
	dockerGz := layer(image.MediaTypeDockerLayerGzip, "3", 77)
	zst := layer(ocispec.MediaTypeImageLayerZstd, "4", 99)
	withDiffIDs := testImage(gz, tarL)
	withDiffIDs.Config.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{gz.diffID, tarL.diffID}}
	wrongDiffIDs := testImage(gz)
	wrongDiffIDs.Config.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{tarL.diffID}}
	noSize := layer(ocispec.MediaTypeImageLayerGzip, "5", -1)
	badType := layer("application/octet-stream", "6", 1)

	tests := []struct {
		name    string
		img     *image.Image
		format  image.Format
		wantErr string // substring; empty means success and a golden comparison
	}{
		{name: "oci-gzip-tar", img: testImage(gz, tarL), format: image.FormatOCI},
		{name: "docker-gzip-tar", img: testImage(gz, tarL), format: image.FormatDocker},
		{name: "oci-from-docker-types", img: testImage(dockerGz), format: image.FormatOCI},
		{name: "oci-zstd", img: testImage(zst), format: image.FormatOCI},
		{name: "oci-no-layers", img: testImage(), format: image.FormatOCI},
		{name: "docker-no-layers", img: testImage(), format: image.FormatDocker},
		{name: "oci-gzip-tar", img: withDiffIDs, format: image.FormatOCI}, // same golden: explicit diff_ids change nothing
		{name: "docker-zstd", img: testImage(zst), format: image.FormatDocker, wantErr: "zstd-compressed layers cannot be written in docker format"},
		{name: "diffid-mismatch", img: wrongDiffIDs, format: image.FormatOCI, wantErr: "do not match"},
		{name: "unknown-size", img: testImage(noSize), format: image.FormatOCI, wantErr: "unknown size"},
		{name: "bad-media-type", img: testImage(badType), format: image.FormatDocker, wantErr: "unsupported layer media type"},
		{name: "bad-format", img: testImage(), format: image.Format(7), wantErr: "unknown image format"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, c, err := tc.img.Manifest(tc.format)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name+".manifest.json", m)
			golden(t, tc.name+".config.json", c)
			checkManifest(t, tc.img, tc.format, m, c)
		})
	}
}

// checkManifest checks the invariants the golden files encode, so a
// careless -update cannot bless a broken output.
func checkManifest(t *testing.T, img *image.Image, f image.Format, m, c []byte) {
	t.Helper()
	var got struct {
		SchemaVersion int
		MediaType     string
		Config        ocispec.Descriptor
		Layers        []ocispec.Descriptor
	}
	if err := json.Unmarshal(m, &got); err != nil {
		t.Fatal(err)
	}
	if got.SchemaVersion != 2 || got.MediaType != f.ManifestMediaType() {
		t.Errorf("schemaVersion %d mediaType %q", got.SchemaVersion, got.MediaType)
	}
	if got.Config.MediaType != f.ConfigMediaType() || got.Config.Digest != digest.FromBytes(c) || got.Config.Size != int64(len(c)) {
		t.Errorf("config descriptor %+v does not describe the config", got.Config)
	}
	if len(got.Layers) != len(img.Layers) {
		t.Fatalf("%d layers in manifest, %d in image", len(got.Layers), len(img.Layers))
	}
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(c, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.RootFS.Type != "layers" || len(cfg.RootFS.DiffIDs) != len(img.Layers) {
		t.Fatalf("rootfs %+v", cfg.RootFS)
	}
	for i, l := range img.Layers {
		if cfg.RootFS.DiffIDs[i] != l.DiffID() || got.Layers[i].Digest != l.Descriptor().Digest || got.Layers[i].Size != l.Descriptor().Size {
			t.Errorf("layer %d mismatch", i)
		}
		wantMT, _ := image.LayerMediaType(l.Descriptor().MediaType, f)
		if got.Layers[i].MediaType != wantMT {
			t.Errorf("layer %d media type %q, want %q", i, got.Layers[i].MediaType, wantMT)
		}
	}
	if cfg.Config.Healthcheck == nil || len(cfg.Config.OnBuild) == 0 || len(cfg.Config.Shell) == 0 {
		t.Errorf("docker config extensions lost: %s", c)
	}
	if !bytes.Contains(c, []byte(`"diff_ids":[`)) {
		t.Errorf("diff_ids must be an array: %s", c)
	}
	if err := image.Validate(&image.Image{Config: cfg, Layers: img.Layers}); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs from golden\n got: %s\nwant: %s", name, got, want)
	}
}

func TestLayerMediaType(t *testing.T) {
	tests := []struct {
		in      string
		f       image.Format
		want    string
		wantErr bool
	}{
		{ocispec.MediaTypeImageLayerGzip, image.FormatDocker, image.MediaTypeDockerLayerGzip, false},
		{ocispec.MediaTypeImageLayer, image.FormatDocker, image.MediaTypeDockerLayer, false},
		{ocispec.MediaTypeImageLayerZstd, image.FormatDocker, "", true},
		{image.MediaTypeDockerLayerGzip, image.FormatOCI, ocispec.MediaTypeImageLayerGzip, false},
		{image.MediaTypeDockerLayer, image.FormatOCI, ocispec.MediaTypeImageLayer, false},
		{image.MediaTypeDockerLayerGzip, image.FormatDocker, image.MediaTypeDockerLayerGzip, false},
		{ocispec.MediaTypeImageLayerZstd, image.FormatOCI, ocispec.MediaTypeImageLayerZstd, false},
		{image.MediaTypeDockerForeignGzip, image.FormatOCI, ocispec.MediaTypeImageLayerNonDistributableGzip, false}, //nolint:staticcheck
		{"text/plain", image.FormatOCI, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.in+"->"+tc.f.String(), func(t *testing.T) {
			got, err := image.LayerMediaType(tc.in, tc.f)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("LayerMediaType(%q, %v) = %q, %v; want %q, err=%v", tc.in, tc.f, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	gz := layer(ocispec.MediaTypeImageLayerGzip, "1", 10)
	tarL := layer(ocispec.MediaTypeImageLayer, "2", 10)
	badTar := fakeLayer{desc: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: dg("x"), Size: 1}, diffID: dg("y")}
	withRootFS := func(img *image.Image, ids ...digest.Digest) *image.Image {
		img.Config.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: ids}
		return img
	}
	noHistory := testImage(gz)
	noHistory.Config.History = nil

	tests := []struct {
		name    string
		img     *image.Image
		wantErr string
	}{
		{"ok", withRootFS(testImage(gz, tarL), gz.diffID, tarL.diffID), ""},
		{"ok-empty", withRootFS(testImage()), ""},
		{"diffids-count", withRootFS(testImage(gz, tarL), gz.diffID), "rootfs.diff_ids has 1 entries for 2 layers"},
		{"diffids-order", withRootFS(testImage(gz, tarL), tarL.diffID, gz.diffID), "rootfs.diff_ids[0]"},
		{"history", withRootFS(noHistory, gz.diffID), "history has 0 non-empty entries for 1 layers"},
		{"uncompressed-digest", withRootFS(testImage(badTar), badTar.diffID), "differs from its diff ID"},
		{"rootfs-type", func() *image.Image {
			img := withRootFS(testImage(gz), gz.diffID)
			img.Config.RootFS.Type = "tarball"
			return img
		}(), `rootfs.type is "tarball"`},
		{"nil", nil, "nil image"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := image.Validate(tc.img)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}
