package image

import (
	"errors"
	"fmt"
)

// Validate checks the structural invariants of img without reading any
// blob: rootfs.type is "layers" (or unset), rootfs.diff_ids (when set)
// match the layers one for one, history has exactly one non-empty entry per
// layer, every layer descriptor has a valid digest, a known size and a
// supported media type, and an uncompressed layer's digest is its diff ID.
// It returns all problems found, joined.
func Validate(img *Image) error {
	if img == nil {
		return errors.New("nil image")
	}
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	rootfs := img.Config.RootFS
	if rootfs.Type != "" && rootfs.Type != "layers" {
		bad("rootfs.type is %q, want \"layers\"", rootfs.Type)
	}
	if len(rootfs.DiffIDs) != 0 || len(img.Layers) == 0 {
		if len(rootfs.DiffIDs) != len(img.Layers) {
			bad("rootfs.diff_ids has %d entries for %d layers", len(rootfs.DiffIDs), len(img.Layers))
		}
	}
	nonEmpty := 0
	for _, h := range img.Config.History {
		if !h.EmptyLayer {
			nonEmpty++
		}
	}
	if nonEmpty != len(img.Layers) {
		bad("history has %d non-empty entries for %d layers", nonEmpty, len(img.Layers))
	}
	for i, l := range img.Layers {
		d := l.Descriptor()
		if err := d.Digest.Validate(); err != nil {
			bad("layer %d: digest %q: %v", i, d.Digest, err)
		}
		if err := l.DiffID().Validate(); err != nil {
			bad("layer %d: diff ID %q: %v", i, l.DiffID(), err)
		}
		if d.Size < 0 {
			bad("layer %d: unknown size", i)
		}
		comp, err := LayerCompression(d.MediaType)
		if err != nil {
			bad("layer %d: %v", i, err)
		} else if comp == Uncompressed && d.Digest != l.DiffID() {
			bad("layer %d: uncompressed layer digest %s differs from its diff ID %s", i, d.Digest, l.DiffID())
		}
		if i < len(rootfs.DiffIDs) && rootfs.DiffIDs[i] != l.DiffID() {
			bad("layer %d: diff ID %s, rootfs.diff_ids[%d] is %s", i, l.DiffID(), i, rootfs.DiffIDs[i])
		}
	}
	return errors.Join(errs...)
}
