package image

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker image manifest v2 schema 2 media types. They are spelled out here
// so that this package depends on the image spec only.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
	MediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerForeignGzip  = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	MediaTypeDockerForeign      = "application/vnd.docker.image.rootfs.foreign.diff.tar"
)

// Compression is the compression of a layer blob, derived from its media type.
type Compression int

const (
	Uncompressed Compression = iota
	Gzip
	Zstd
)

func (c Compression) String() string {
	switch c {
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	default:
		return "none"
	}
}

// layerKind is what a layer media type means, independent of the family
// (OCI or Docker) that spells it.
type layerKind struct {
	comp    Compression
	foreign bool // Docker foreign layer / OCI non-distributable layer
}

//nolint:staticcheck // the non-distributable OCI types are deprecated but still met in the wild.
var layerKinds = map[string]layerKind{
	ocispec.MediaTypeImageLayer:                         {comp: Uncompressed},
	ocispec.MediaTypeImageLayerGzip:                     {comp: Gzip},
	ocispec.MediaTypeImageLayerZstd:                     {comp: Zstd},
	ocispec.MediaTypeImageLayerNonDistributable:         {comp: Uncompressed, foreign: true},
	ocispec.MediaTypeImageLayerNonDistributableGzip:     {comp: Gzip, foreign: true},
	ocispec.MediaTypeImageLayerNonDistributableZstd:     {comp: Zstd, foreign: true},
	MediaTypeDockerLayer:                                {comp: Uncompressed},
	MediaTypeDockerLayerGzip:                            {comp: Gzip},
	MediaTypeDockerForeign:                              {comp: Uncompressed, foreign: true},
	MediaTypeDockerForeignGzip:                          {comp: Gzip, foreign: true},
	"application/vnd.docker.image.rootfs.diff.tar.zstd": {comp: Zstd}, // seen from some tools; not a Docker standard
}

// LayerCompression reports the compression a layer media type implies.
func LayerCompression(mediaType string) (Compression, error) {
	k, ok := layerKinds[mediaType]
	if !ok {
		return 0, fmt.Errorf("unsupported layer media type %q", mediaType)
	}
	return k.comp, nil
}

// LayerMediaType spells the layer media type of mediaType in format f:
// tar, tar+gzip and tar+zstd map between the OCI and Docker families.
// zstd has no Docker schema 2 type, so it is an error for FormatDocker.
func LayerMediaType(mediaType string, f Format) (string, error) {
	k, ok := layerKinds[mediaType]
	if !ok {
		return "", fmt.Errorf("unsupported layer media type %q", mediaType)
	}
	if f == FormatDocker {
		switch {
		case k.comp == Zstd:
			return "", fmt.Errorf("layer media type %q: zstd-compressed layers cannot be written in docker format (use the oci format or gzip compression)", mediaType)
		case k.foreign && k.comp == Gzip:
			return MediaTypeDockerForeignGzip, nil
		case k.foreign:
			return MediaTypeDockerForeign, nil
		case k.comp == Gzip:
			return MediaTypeDockerLayerGzip, nil
		default:
			return MediaTypeDockerLayer, nil
		}
	}
	//nolint:staticcheck // non-distributable types: see layerKinds.
	switch {
	case k.foreign && k.comp == Gzip:
		return ocispec.MediaTypeImageLayerNonDistributableGzip, nil
	case k.foreign && k.comp == Zstd:
		return ocispec.MediaTypeImageLayerNonDistributableZstd, nil
	case k.foreign:
		return ocispec.MediaTypeImageLayerNonDistributable, nil
	case k.comp == Gzip:
		return ocispec.MediaTypeImageLayerGzip, nil
	case k.comp == Zstd:
		return ocispec.MediaTypeImageLayerZstd, nil
	default:
		return ocispec.MediaTypeImageLayer, nil
	}
}

// ManifestMediaType is the manifest media type written for f.
func (f Format) ManifestMediaType() string {
	if f == FormatDocker {
		return MediaTypeDockerManifest
	}
	return ocispec.MediaTypeImageManifest
}

// ConfigMediaType is the config media type written for f.
func (f Format) ConfigMediaType() string {
	if f == FormatDocker {
		return MediaTypeDockerConfig
	}
	return ocispec.MediaTypeImageConfig
}

// dockerDescriptor is a Docker schema 2 descriptor, with Docker's field order
// and without the OCI-only fields (annotations, platform, data).
type dockerDescriptor struct {
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
	Digest    digest.Digest `json:"digest"`
	URLs      []string      `json:"urls,omitempty"`
}

type dockerManifest struct {
	SchemaVersion int                `json:"schemaVersion"`
	MediaType     string             `json:"mediaType"`
	Config        dockerDescriptor   `json:"config"`
	Layers        []dockerDescriptor `json:"layers"`
}

// ConfigJSON returns the config JSON of img: for a resolved image whose
// config is unchanged, the source's own bytes; otherwise the canonical
// form: compact, with rootfs.type "layers" and rootfs.diff_ids taken from
// the layers. A config whose diff_ids are set but disagree with the layers
// is an error.
func (img *Image) ConfigJSON() ([]byte, error) {
	b, err := img.canonicalConfig()
	if err != nil {
		return nil, err
	}
	if img.raw != nil && bytes.Equal(b, img.rawCanon) {
		return img.raw, nil
	}
	return b, nil
}

// canonicalConfig is ConfigJSON without the raw-config shortcut.
func (img *Image) canonicalConfig() ([]byte, error) {
	cfg := img.Config
	diffIDs := make([]digest.Digest, len(img.Layers))
	for i, l := range img.Layers {
		diffIDs[i] = l.DiffID()
	}
	if len(cfg.RootFS.DiffIDs) != 0 && !slices.Equal(cfg.RootFS.DiffIDs, diffIDs) {
		return nil, fmt.Errorf("config rootfs.diff_ids (%d entries) do not match the %d layers' diff IDs", len(cfg.RootFS.DiffIDs), len(diffIDs))
	}
	cfg.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encoding image config: %w", err)
	}
	return b, nil
}

// Manifest returns the canonical (compact, deterministic) manifest and
// config JSON of img in format f. The config bytes are the same for both
// formats, so the image ID (the config digest) does not depend on f. Layer
// media types are respelled for f (see LayerMediaType).
func (img *Image) Manifest(f Format) (manifest []byte, config []byte, err error) {
	config, err = img.ConfigJSON()
	if err != nil {
		return nil, nil, err
	}
	cfgDesc := ocispec.Descriptor{
		MediaType: f.ConfigMediaType(),
		Digest:    digest.FromBytes(config),
		Size:      int64(len(config)),
	}
	layers := make([]ocispec.Descriptor, len(img.Layers))
	for i, l := range img.Layers {
		d := l.Descriptor()
		if err := d.Digest.Validate(); err != nil {
			return nil, nil, fmt.Errorf("layer %d: digest %q: %w", i, d.Digest, err)
		}
		if d.Size < 0 {
			return nil, nil, fmt.Errorf("layer %d (%s): unknown size", i, d.Digest)
		}
		mt, err := LayerMediaType(d.MediaType, f)
		if err != nil {
			return nil, nil, fmt.Errorf("layer %d (%s): %w", i, d.Digest, err)
		}
		layers[i] = ocispec.Descriptor{MediaType: mt, Digest: d.Digest, Size: d.Size, URLs: d.URLs, Annotations: d.Annotations}
	}

	var m any
	switch f {
	case FormatOCI:
		m = ocispec.Manifest{
			Versioned:   specs.Versioned{SchemaVersion: 2},
			MediaType:   ocispec.MediaTypeImageManifest,
			Config:      cfgDesc,
			Layers:      layers,
			Annotations: img.Annotations,
		}
	case FormatDocker:
		dm := dockerManifest{
			SchemaVersion: 2,
			MediaType:     MediaTypeDockerManifest,
			Config:        dockerDescriptor{MediaType: cfgDesc.MediaType, Size: cfgDesc.Size, Digest: cfgDesc.Digest},
			Layers:        make([]dockerDescriptor, len(layers)),
		}
		for i, d := range layers {
			dm.Layers[i] = dockerDescriptor{MediaType: d.MediaType, Size: d.Size, Digest: d.Digest, URLs: d.URLs}
		}
		m = dm
	default:
		return nil, nil, fmt.Errorf("unknown image format %d", int(f))
	}
	manifest, err = json.Marshal(m)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding %s manifest: %w", f, err)
	}
	return manifest, config, nil
}

// ID is the image ID: the digest of the canonical config JSON (as in
// containers/storage, buildah and podman).
func (img *Image) ID() (digest.Digest, error) {
	b, err := img.ConfigJSON()
	if err != nil {
		return "", err
	}
	return digest.FromBytes(b), nil
}

// ParseFormat parses a --format value: "oci", or "docker" (alias "v2s2").
func ParseFormat(s string) (Format, error) {
	switch s {
	case "oci", "":
		return FormatOCI, nil
	case "docker", "v2s2":
		return FormatDocker, nil
	default:
		return 0, fmt.Errorf("unknown image format %q (want oci or docker)", s)
	}
}
