package registry

import (
	"context"
	"io"

	"github.com/builder-dev/builder/content"

	"go.podman.io/image/v5/types"
)

// teeRef wraps a registry reference so that the blobs copy.Image reads from
// it are also kept in the blob store (compressed, as the registry serves
// them), and blobs already there are served locally instead of fetched.
// containers/image verifies every blob it reads against its digest either
// way; the store keeps a blob only if its own digest check passes too.
type teeRef struct {
	types.ImageReference
	blobs  *content.Store // nil: nothing kept
	limits Limits
}

func (r teeRef) NewImageSource(ctx context.Context, sys *types.SystemContext) (types.ImageSource, error) {
	src, err := r.ImageReference.NewImageSource(ctx, sys)
	if err != nil {
		return nil, err
	}
	return &teeSource{ImageSource: src, blobs: r.blobs, limits: r.limits}, nil
}

type teeSource struct {
	types.ImageSource
	blobs  *content.Store
	limits Limits
}

func (s *teeSource) GetBlob(ctx context.Context, bi types.BlobInfo, bic types.BlobInfoCache) (io.ReadCloser, int64, error) {
	if bi.Digest.Validate() == nil && s.blobs != nil {
		if n, err := s.blobs.Stat(bi.Digest); err == nil && (bi.Size < 0 || bi.Size == n) {
			if f, err := s.blobs.Open(bi.Digest); err == nil {
				return f, n, nil
			}
		}
	}
	bctx, cancel := context.WithCancel(ctx) // the guard's way to cut a stalled read
	rc, n, err := s.ImageSource.GetBlob(bctx, bi, bic)
	if err != nil {
		cancel()
		return rc, n, err
	}
	if rc, err = s.limits.Guard(rc, bi, cancel); err != nil {
		return nil, 0, err
	}
	if bi.Digest.Validate() != nil {
		return rc, n, nil
	}
	// The registry's bytes must be what the manifest says, size and digest
	// both, whatever containers/image checks itself.
	rc = content.Verify(rc, bi.Digest, bi.Size)
	if s.blobs == nil {
		return rc, n, nil
	}
	ing, ierr := s.blobs.Ingest()
	if ierr != nil {
		return rc, n, nil // keeping a copy is an optimisation only
	}
	return &teeReader{rc: rc, ing: ing, bi: bi}, n, nil
}

// teeReader copies what it reads into an ingest and commits it at EOF.
type teeReader struct {
	rc  io.ReadCloser
	ing *content.Ingester // nil once committed or abandoned
	bi  types.BlobInfo
}

func (t *teeReader) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	if t.ing != nil && n > 0 {
		if _, werr := t.ing.Write(p[:n]); werr != nil {
			t.ing.Close()
			t.ing = nil
		}
	}
	if err == io.EOF && t.ing != nil {
		// A mismatch discards the copy; containers/image reports it.
		_, _, _ = t.ing.Commit(t.bi.Digest)
		t.ing = nil
	}
	return n, err
}

func (t *teeReader) Close() error {
	if t.ing != nil {
		t.ing.Close()
		t.ing = nil
	}
	return t.rc.Close()
}
