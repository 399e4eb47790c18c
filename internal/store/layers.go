package store

import (
	"context"
	"fmt"
	"io"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/archive"
)

// HasLayer reports whether s holds a layer whose uncompressed tar has
// digest diffID.
func HasLayer(s storage.Store, diffID digest.Digest) bool {
	ls, err := s.LayersByUncompressedDigest(diffID)
	return err == nil && len(ls) > 0
}

// Layer is a layer of the store, read back as its uncompressed tar: the
// same bytes, hence the same digest, as were put in (containers/storage
// keeps the tar's framing beside the files).
type Layer struct {
	s      storage.Store
	id     string
	diffID digest.Digest
	size   int64
}

// LayerByDiffID returns the store's layer with uncompressed digest diffID.
func LayerByDiffID(s storage.Store, diffID digest.Digest) (*Layer, error) {
	ls, err := s.LayersByUncompressedDigest(diffID)
	if err != nil || len(ls) == 0 {
		return nil, fmt.Errorf("layer %s is not in the store", diffID)
	}
	return &Layer{s: s, id: ls[0].ID, diffID: diffID, size: ls[0].UncompressedSize}, nil
}

func (l *Layer) Descriptor() ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: l.diffID, Size: l.size}
}
func (l *Layer) DiffID() digest.Digest { return l.diffID }

// Open returns the tar; reading it to EOF fails if it does not match the
// diff ID.
func (l *Layer) Open(context.Context) (io.ReadCloser, error) {
	c := archive.Uncompressed
	rc, err := l.s.Diff("", l.id, &storage.DiffOptions{Compression: &c})
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", l.diffID, err)
	}
	return &checked{rc: rc, v: l.diffID.Verifier(), d: l.diffID}, nil
}

type checked struct {
	rc io.ReadCloser
	v  digest.Verifier
	d  digest.Digest
}

func (c *checked) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.v.Write(p[:n])
	if err == io.EOF && !c.v.Verified() {
		return n, fmt.Errorf("layer %s: the store's tar does not match its digest", c.d)
	}
	return n, err
}

func (c *checked) Close() error { return c.rc.Close() }
