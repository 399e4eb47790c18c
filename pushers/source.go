package pushers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/builder-dev/builder/image"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
	cimage "go.podman.io/image/v5/image"
	"go.podman.io/image/v5/types"
)

// builtTransport is the (unregistered) transport of images held in memory
// as *image.Image; it exists only so copy.Image can read them.
type builtTransport struct{}

func (builtTransport) Name() string { return "builder-image" }
func (builtTransport) ParseReference(string) (types.ImageReference, error) {
	return nil, errors.New("builder-image references cannot be parsed")
}
func (builtTransport) ValidatePolicyConfigurationScope(string) error { return nil }

// builtRef is a types.ImageReference over an in-memory image rendered in
// one format. Its manifest and config are fixed at construction.
type builtRef struct {
	img       *image.Image
	manifest  []byte
	mimeType  string
	manDigest digest.Digest
	config    []byte
	cfgDigest digest.Digest
	layers    map[digest.Digest]image.Layer
	// instances are the images of a list (newListRef); nil for an image.
	instances map[digest.Digest]*builtRef
}

func newBuiltRef(img *image.Image, f image.Format) (*builtRef, error) {
	man, cfg, err := img.Manifest(f)
	if err != nil {
		return nil, err
	}
	r := &builtRef{
		img:       img,
		manifest:  man,
		mimeType:  f.ManifestMediaType(),
		manDigest: digest.FromBytes(man),
		config:    cfg,
		cfgDigest: digest.FromBytes(cfg),
		layers:    make(map[digest.Digest]image.Layer, len(img.Layers)),
	}
	for _, l := range img.Layers {
		r.layers[l.Descriptor().Digest] = l
	}
	return r, nil
}

func (r *builtRef) Transport() types.ImageTransport         { return builtTransport{} }
func (r *builtRef) StringWithinTransport() string           { return r.manDigest.String() }
func (r *builtRef) DockerReference() reference.Named        { return nil }
func (r *builtRef) PolicyConfigurationIdentity() string     { return "" }
func (r *builtRef) PolicyConfigurationNamespaces() []string { return nil }

func (r *builtRef) NewImage(ctx context.Context, sys *types.SystemContext) (types.ImageCloser, error) {
	src, err := r.NewImageSource(ctx, sys)
	if err != nil {
		return nil, err
	}
	return cimage.FromSource(ctx, sys, src)
}

func (r *builtRef) NewImageSource(context.Context, *types.SystemContext) (types.ImageSource, error) {
	return &builtSource{ref: r}, nil
}

func (r *builtRef) NewImageDestination(context.Context, *types.SystemContext) (types.ImageDestination, error) {
	return nil, errors.New("builder-image references are read-only")
}

func (r *builtRef) DeleteImage(context.Context, *types.SystemContext) error {
	return errors.New("builder-image references are read-only")
}

// builtSource serves the manifest, the config and the layer blobs.
// Layer.Open must be safe for concurrent use (it is for the blob store and
// for imagesource layers), so GetBlob is declared thread-safe.
type builtSource struct{ ref *builtRef }

func (s *builtSource) Reference() types.ImageReference { return s.ref }
func (s *builtSource) Close() error                    { return nil }
func (s *builtSource) HasThreadSafeGetBlob() bool      { return true }

func (s *builtSource) GetManifest(_ context.Context, instance *digest.Digest) ([]byte, string, error) {
	r, err := s.ref.instanceRef(instance)
	if err != nil {
		return nil, "", err
	}
	return r.manifest, r.mimeType, nil
}

func (s *builtSource) GetBlob(ctx context.Context, bi types.BlobInfo, _ types.BlobInfoCache) (io.ReadCloser, int64, error) {
	if bi.Digest == s.ref.cfgDigest && s.ref.config != nil {
		return io.NopCloser(bytes.NewReader(s.ref.config)), int64(len(s.ref.config)), nil
	}
	for _, in := range s.ref.instances {
		if bi.Digest == in.cfgDigest {
			return io.NopCloser(bytes.NewReader(in.config)), int64(len(in.config)), nil
		}
	}
	l, ok := s.ref.layers[bi.Digest]
	if !ok {
		return nil, -1, fmt.Errorf("blob %s is not part of the image", bi.Digest)
	}
	rc, err := l.Open(ctx)
	if err != nil {
		return nil, -1, fmt.Errorf("opening layer %s: %w", bi.Digest, err)
	}
	return rc, l.Descriptor().Size, nil
}

func (s *builtSource) GetSignatures(context.Context, *digest.Digest) ([][]byte, error) {
	return nil, nil
}

func (s *builtSource) LayerInfosForCopy(context.Context, *digest.Digest) ([]types.BlobInfo, error) {
	return nil, nil
}
