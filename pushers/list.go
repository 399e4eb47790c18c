package pushers

// Multi-platform pushes: one image per platform and an index naming each
// with its platform, written by containers/image's copy of a whole list
// (every instance by digest first, the index last, under the tag), so a
// registry or an OCI layout never names an index whose images are not
// all there.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/platform"
	"github.com/builder-dev/builder/registry"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/manifest"
)

// ListEntry is one platform's image of a multi-platform push.
type ListEntry struct {
	Image    *image.Image
	Platform platform.Platform
	// Full, when set, is the index entry's platform with the fields
	// Platform has no room for (os.version, os.features).
	Full *ocispec.Platform
	// Annotations of the image's entry in the index (OCI indexes only).
	Annotations map[string]string
}

// Manifests renders each entry's manifest in format and returns the
// index (an OCI index for FormatOCI, a Docker manifest list for
// FormatDocker) that names them in order, with its MIME type.
func Manifests(entries []ListEntry, format image.Format) ([]byte, string, error) {
	idx, mt, _, err := buildList(entries, format)
	return idx, mt, err
}

func buildList(entries []ListEntry, format image.Format) ([]byte, string, []*builtRef, error) {
	if len(entries) == 0 {
		return nil, "", nil, errors.New("no image for the index")
	}
	mt := ocispec.MediaTypeImageIndex
	if format == image.FormatDocker {
		mt = manifest.DockerV2ListMediaType
	}
	refs := make([]*builtRef, len(entries))
	descs := make([]ocispec.Descriptor, len(entries))
	for i, e := range entries {
		r, err := newBuiltRef(e.Image, format)
		if err != nil {
			return nil, "", nil, err
		}
		refs[i] = r
		p := e.Platform.OCI()
		if e.Full != nil {
			p = *e.Full
		}
		descs[i] = ocispec.Descriptor{
			MediaType: r.mimeType, Digest: r.manDigest, Size: int64(len(r.manifest)), Platform: &p,
		}
		if format == image.FormatOCI && len(e.Annotations) > 0 {
			descs[i].Annotations = maps.Clone(e.Annotations)
		}
	}
	idx, err := json.Marshal(struct {
		specs.Versioned
		MediaType string               `json:"mediaType"`
		Manifests []ocispec.Descriptor `json:"manifests"`
	}{specs.Versioned{SchemaVersion: 2}, mt, descs})
	if err != nil {
		return nil, "", nil, err
	}
	return idx, mt, refs, nil
}

// PushList writes one image per entry and an index naming them to dest: a
// registry (docker://REF), an OCI layout (oci:DIR[:TAG], whose index.json
// then names the index under TAG) or an OCI archive. It returns the
// index's digest. The local store keeps lists its own way (images.Store)
// and a docker-archive holds no index: both are errors here.
func PushList(ctx context.Context, entries []ListEntry, dest string, o Options) (digest.Digest, error) {
	dst, err := parseDest(dest)
	if err != nil {
		return "", err
	}
	format := o.Format
	switch dst.kind {
	case kindStore:
		return "", fmt.Errorf("push to %s: the local store keeps manifest lists as images of their own; use images.Store", displayDest(dest))
	case kindDockerArchive:
		return "", fmt.Errorf("push to %s: a docker-archive holds one image, not an image per platform (use an OCI layout: oci:DIR)", displayDest(dest))
	case kindOCI:
		format = image.FormatOCI
	}
	if o.Variants != nil {
		compressed := make([]ListEntry, len(entries))
		for i, e := range entries {
			img, err := compressLayers(ctx, e.Image, format, o.Compression, o.Variants)
			if err != nil {
				return "", fmt.Errorf("push to %s: %w", displayDest(dest), err)
			}
			compressed[i] = e
			compressed[i].Image = img
		}
		entries = compressed
	}
	idx, mt, refs, err := buildList(entries, format)
	if err != nil {
		return "", fmt.Errorf("push to %s: %w", displayDest(dest), err)
	}
	src := newListRef(refs, idx, mt)
	opts := copy.Options{
		RemoveSignatures:   o.RemoveSignatures,
		ReportWriter:       o.ReportWriter,
		SourceCtx:          o.Sys,
		DestinationCtx:     o.Sys,
		ImageListSelection: copy.CopyAllImages,
		PreserveDigests:    src.allCompressed(),
	}
	ref := dst.ref
	if dst.kind == kindRegistry && ref.DockerReference() == nil {
		return "", fmt.Errorf("push to %s: not a registry reference", transportsString(ref))
	}
	op, sys := registry.PushOp(ref, displayDest(dest), o.Sys)
	opts.SourceCtx, opts.DestinationCtx = sys, sys
	copied, err := registry.Copy(ctx, o.Retry, op, ref, src, opts)
	if err != nil {
		return "", err
	}
	return manifest.Digest(copied)
}

// newListRef is a builtRef whose manifest is the index idx over the
// images of refs.
func newListRef(refs []*builtRef, idx []byte, mimeType string) *builtRef {
	r := &builtRef{
		manifest:  idx,
		mimeType:  mimeType,
		manDigest: digest.FromBytes(idx),
		layers:    map[digest.Digest]image.Layer{},
		instances: make(map[digest.Digest]*builtRef, len(refs)),
	}
	for _, in := range refs {
		r.instances[in.manDigest] = in
		maps.Copy(r.layers, in.layers)
	}
	return r
}

// instanceRef is the image of instance d of a list (or r itself).
func (r *builtRef) instanceRef(d *digest.Digest) (*builtRef, error) {
	if d == nil || *d == r.manDigest {
		return r, nil
	}
	if in, ok := r.instances[*d]; ok {
		return in, nil
	}
	if r.instances == nil {
		return nil, fmt.Errorf("manifest %s not found (the image is not a list)", *d)
	}
	return nil, fmt.Errorf("manifest %s is not in the list", *d)
}
