package pushers

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/layer"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage"
)

// PreloadLayers puts layers (an image's, or its first ones, bottom first)
// into the store directly from their tar streams, under the IDs
// containers/image gives them (the chain of parent ID and diff ID), so the
// copy that follows (a store Push, or a build's commit, which hands its
// layers over while it runs) finds every layer present and only writes the
// image. Given a blob, containers/image would first copy it
// to a temporary file and digest it before applying it: a second write and
// read of every new layer. Should its ID scheme ever differ, it copies from
// these layers instead; nothing depends on the guess but speed.
func PreloadLayers(ctx context.Context, s storage.Store, layers []image.Layer, trees Trees) error {
	if !treesFit(s, trees) {
		trees = nil
	}
	parent := ""
	for _, l := range layers {
		if err := ctx.Err(); err != nil {
			return err
		}
		diffID := l.DiffID()
		if diffID.Validate() != nil || diffID.Algorithm() != digest.SHA256 {
			return nil // leave unusual layers to containers/image
		}
		id := diffID.Encoded()
		if parent != "" {
			id = digest.Canonical.FromString(parent + "+" + diffID.Encoded()).Encoded()
		}
		if _, err := s.Layer(id); err == nil {
			parent = id
			continue
		}
		if trees != nil {
			moved, err := stageLayer(ctx, s, trees, id, parent, l)
			if err != nil {
				return fmt.Errorf("layer %s: %w", diffID, err)
			}
			if moved {
				parent = id
				continue
			}
		}
		if err := putLayer(ctx, s, id, parent, l); err != nil {
			return fmt.Errorf("layer %s: %w", diffID, err)
		}
		parent = id
	}
	return nil
}

func putLayer(ctx context.Context, s storage.Store, id, parent string, l image.Layer) error {
	rc, err := layer.Uncompressed(ctx, l) // a raw scratch copy already (rawLayers), when there is one
	if err != nil {
		return err
	}
	defer rc.Close()
	desc := l.Descriptor()
	size := desc.Size
	opts := &storage.LayerOptions{OriginalDigest: desc.Digest, OriginalSize: &size, UncompressedDigest: l.DiffID()}
	// Verify what is applied against the diff ID: a layer in the store is
	// trusted by it from now on.
	v := digest.SHA256.Digester()
	_, _, err = s.PutLayer(id, parent, nil, "", false, opts, io.TeeReader(rc, v.Hash()))
	if errors.Is(err, storage.ErrDuplicateID) {
		return nil // another build put it there first
	}
	if err != nil {
		return err
	}
	if got := v.Digest(); got != l.DiffID() {
		s.DeleteLayer(id)
		return fmt.Errorf("applied tar has digest %s", got)
	}
	return nil
}
