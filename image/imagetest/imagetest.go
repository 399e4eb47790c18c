// Package imagetest builds small in-memory images and checks images by
// reading every blob. It is meant for tests of packages that produce or
// consume image.Image values.
package imagetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/builder-dev/builder/image"
	"github.com/klauspost/compress/zstd"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// File is one tar entry. The zero Type is a regular file.
type File struct {
	Name     string
	Type     byte // tar.TypeReg (default), tar.TypeDir, tar.TypeSymlink
	Mode     int64
	Body     string
	Linkname string
	UID, GID int
}

// Epoch is the fixed timestamp of everything this package creates.
var Epoch = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// Tar returns a deterministic tar stream of files, in the order given.
func Tar(files ...File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{
			Name:     f.Name,
			Typeflag: f.Type,
			Mode:     f.Mode,
			Linkname: f.Linkname,
			Uid:      f.UID,
			Gid:      f.GID,
			ModTime:  Epoch,
			Format:   tar.FormatPAX,
		}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(f.Body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := io.WriteString(tw, f.Body); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Layer is an in-memory layer.
type Layer struct {
	desc   ocispec.Descriptor
	diffID digest.Digest
	blob   []byte
}

var _ image.Layer = (*Layer)(nil)

// NewLayer compresses a tar stream with c and describes it with the OCI
// layer media type for c.
func NewLayer(tarStream []byte, c image.Compression) (*Layer, error) {
	var blob []byte
	mt := ocispec.MediaTypeImageLayer
	switch c {
	case image.Uncompressed:
		blob = tarStream
	case image.Gzip:
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(tarStream); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
		blob, mt = buf.Bytes(), ocispec.MediaTypeImageLayerGzip
	case image.Zstd:
		zw, err := zstd.NewWriter(nil)
		if err != nil {
			return nil, err
		}
		blob, mt = zw.EncodeAll(tarStream, nil), ocispec.MediaTypeImageLayerZstd
		if err := zw.Close(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown compression %v", c)
	}
	return &Layer{
		desc:   ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(blob), Size: int64(len(blob))},
		diffID: digest.FromBytes(tarStream),
		blob:   blob,
	}, nil
}

// MustLayer is NewLayer(Tar(files...), c) that panics on error.
func MustLayer(c image.Compression, files ...File) *Layer {
	t, err := Tar(files...)
	if err != nil {
		panic(err)
	}
	l, err := NewLayer(t, c)
	if err != nil {
		panic(err)
	}
	return l
}

func (l *Layer) Descriptor() ocispec.Descriptor { return l.desc }
func (l *Layer) DiffID() digest.Digest          { return l.diffID }
func (l *Layer) Blob() []byte                   { return l.blob }
func (l *Layer) Open(context.Context) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.blob)), nil
}

// NewImage returns an image for platform p (linux/amd64 when zero) with the
// given layers, one history entry per layer, a fixed creation time and a
// config that uses the Docker extensions (Healthcheck, OnBuild, Shell).
func NewImage(p ocispec.Platform, layers ...image.Layer) *image.Image {
	if p.OS == "" {
		p.OS = "linux"
	}
	if p.Architecture == "" {
		p.Architecture = "amd64"
	}
	created := Epoch
	cfg := dockerspec.DockerOCIImage{}
	cfg.Created = &created
	cfg.Platform = p
	cfg.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cfg.Config.Cmd = []string{"/bin/sh"}
	cfg.Config.Labels = map[string]string{"org.example.test": "yes"}
	cfg.Config.Healthcheck = &dockerspec.HealthcheckConfig{Test: []string{"CMD-SHELL", "true"}, Interval: 30 * time.Second}
	cfg.Config.OnBuild = []string{"RUN echo onbuild"}
	cfg.Config.Shell = []string{"/bin/sh", "-c"}
	cfg.RootFS.Type = "layers"
	for i, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.DiffID())
		cfg.History = append(cfg.History, ocispec.History{Created: &created, CreatedBy: fmt.Sprintf("layer %d", i)})
	}
	cfg.History = append(cfg.History, ocispec.History{Created: &created, CreatedBy: "CMD [\"/bin/sh\"]", EmptyLayer: true})
	return &image.Image{Config: cfg, Layers: layers}
}

// Verify checks img with image.Validate, then reads every layer: its bytes
// must match the descriptor's digest and size, and its decompressed bytes
// the diff ID.
func Verify(ctx context.Context, img *image.Image) error {
	if err := image.Validate(img); err != nil {
		return err
	}
	var errs []error
	for i, l := range img.Layers {
		if err := verifyLayer(ctx, l); err != nil {
			errs = append(errs, fmt.Errorf("layer %d: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

func verifyLayer(ctx context.Context, l image.Layer) error {
	d := l.Descriptor()
	rc, err := l.Open(ctx)
	if err != nil {
		return err
	}
	defer rc.Close()
	blob, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	if got := digest.FromBytes(blob); got != d.Digest {
		return fmt.Errorf("blob digest %s, descriptor says %s", got, d.Digest)
	}
	if int64(len(blob)) != d.Size {
		return fmt.Errorf("blob size %d, descriptor says %d", len(blob), d.Size)
	}
	comp, err := image.LayerCompression(d.MediaType)
	if err != nil {
		return err
	}
	var r io.Reader
	switch comp {
	case image.Gzip:
		zr, err := gzip.NewReader(bytes.NewReader(blob))
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		r = zr
	case image.Zstd:
		zr, err := zstd.NewReader(bytes.NewReader(blob))
		if err != nil {
			return fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		r = zr
	default:
		r = bytes.NewReader(blob)
	}
	dg := digest.Canonical.Digester()
	if _, err := io.Copy(dg.Hash(), r); err != nil {
		return fmt.Errorf("decompressing: %w", err)
	}
	if got := dg.Digest(); got != l.DiffID() {
		return fmt.Errorf("uncompressed digest %s, diff ID is %s", got, l.DiffID())
	}
	return nil
}
