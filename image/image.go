// Package image is the project's image model: an image config plus ordered
// layers whose blobs may live in the local blob store or in a source image
// (registry, OCI layout, containers/storage) and are opened lazily.
package image

import (
	"context"
	"io"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Layer is one filesystem layer.
type Layer interface {
	// Descriptor describes the blob as Open returns it: media type
	// (tar, tar+gzip or tar+zstd), digest and size.
	Descriptor() ocispec.Descriptor
	// DiffID is the digest of the uncompressed tar.
	DiffID() digest.Digest
	// Open returns the blob bytes exactly as described by Descriptor.
	Open(ctx context.Context) (io.ReadCloser, error)
}

// Image is a resolved base image or a built image.
type Image struct {
	// Config is the full image config (Docker's superset of the OCI config,
	// so Healthcheck, OnBuild and Shell survive).
	Config dockerspec.DockerOCIImage
	// Layers are ordered bottom to top; len(Layers) == len(Config.RootFS.DiffIDs).
	Layers []Layer
	// ManifestDigest is the source manifest digest for resolved images
	// (the FROM cache root); empty for images built here.
	ManifestDigest digest.Digest
	// Annotations go into an OCI manifest (--annotation); Docker schema 2
	// has no place for them.
	Annotations map[string]string

	// raw is a resolved image's config exactly as its source holds it, and
	// rawCanon what the parsed config marshalled to then: ConfigJSON
	// returns raw while Config still marshals to rawCanon, so pushing an
	// image nobody changed keeps its image ID (fields our types do not
	// know survive too). Copies of the struct carry them along; any change
	// to Config or Layers makes the comparison fail and drops them.
	raw, rawCanon []byte
}

// Format selects the manifest and media-type family written for an image.
type Format int

const (
	FormatOCI    Format = iota // application/vnd.oci.image.manifest.v1+json
	FormatDocker               // application/vnd.docker.distribution.manifest.v2+json
)

func (f Format) String() string {
	if f == FormatDocker {
		return "docker"
	}
	return "oci"
}
