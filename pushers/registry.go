package pushers

import (
	"context"
	"fmt"

	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/registry"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"
)

// pushRegistry pushes src to a docker:// reference. When every layer is
// already compressed (the usual case: see compressLayers), the manifest is
// known before anything is sent, and the push goes blobs first, then the
// manifest by digest, then the tag: a push interrupted half-way leaves no
// tag pointing at a partial image, a retried one sends only what is
// missing (containers/image asks the registry first, and mounts blobs it
// knows in another repository of the same registry), and nothing is
// compressed on the way. Otherwise containers/image compresses the
// uncompressed layers and pushes by tag.
func pushRegistry(ctx context.Context, src *builtRef, ref types.ImageReference, format image.Format, o Options) (digest.Digest, error) {
	named := ref.DockerReference()
	if named == nil {
		return "", fmt.Errorf("push to %s: not a registry reference", transportsString(ref))
	}
	op, sys := registry.PushOp(ref, named.String(), o.Sys)
	o.Sys = sys
	opts := copy.Options{
		RemoveSignatures:      o.RemoveSignatures,
		ReportWriter:          o.ReportWriter,
		SourceCtx:             o.Sys,
		DestinationCtx:        o.Sys,
		ForceManifestMIMEType: format.ManifestMediaType(),
	}
	if !src.allCompressed() {
		man, err := registry.Copy(ctx, o.Retry, op, ref, src, opts)
		if err != nil {
			return "", err
		}
		return manifest.Digest(man)
	}
	opts.PreserveDigests = true
	if d, ok := named.(reference.Digested); ok {
		if d.Digest() != src.manDigest {
			return "", fmt.Errorf("push to %s: the image's manifest digest is %s", named, src.manDigest)
		}
		_, err := registry.Copy(ctx, o.Retry, op, ref, src, opts)
		return src.manDigest, err
	}
	byDigest, err := reference.WithDigest(reference.TrimNamed(named), src.manDigest)
	if err != nil {
		return "", err
	}
	digestRef, err := docker.NewReference(byDigest)
	if err != nil {
		return "", err
	}
	if _, err := registry.Copy(ctx, o.Retry, op, digestRef, src, opts); err != nil {
		return "", err
	}
	tagOp := op
	tagOp.Verb = "tag manifest at"
	err = tagOp.Do(ctx, o.Retry, func(ctx context.Context) error {
		return putManifest(ctx, ref, o.Sys, src.manifest)
	})
	if err != nil {
		return "", err
	}
	return src.manDigest, nil
}

// putManifest uploads man under ref's tag. Every blob and the manifest by
// digest are already in the repository, so this only moves the tag.
func putManifest(ctx context.Context, ref types.ImageReference, sys *types.SystemContext, man []byte) error {
	dest, err := ref.NewImageDestination(ctx, sys)
	if err != nil {
		return err
	}
	defer dest.Close()
	if err := dest.PutManifest(ctx, man, nil); err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	return nil
}

func transportsString(ref types.ImageReference) string {
	return ref.Transport().Name() + ":" + ref.StringWithinTransport()
}

// allCompressed reports whether every layer is sent compressed, so that
// containers/image need not (and, with PreserveDigests, may not) change it.
func (r *builtRef) allCompressed() bool {
	for _, l := range r.layers {
		c, err := image.LayerCompression(l.Descriptor().MediaType)
		if err != nil || c == image.Uncompressed {
			return false
		}
	}
	return true
}
