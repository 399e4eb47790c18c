package build

// Eager upload: with bud --push, each new layer's compressed blob streams to
// the first registry destination while it is being written (the upload
// follows the blob file as it grows, so the writer never waits on the
// network), and the push at the end finds the blobs there (one HEAD each).
// Over a real network the build and the upload overlap instead of adding
// up. Best effort throughout: a failure here only means the final push,
// with its retries, uploads the blob.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/builder-dev/builder/registry"
	"github.com/distribution/reference"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/pkg/blobinfocache"
	"go.podman.io/image/v5/types"
)

// eagerUploader streams layer blobs to one registry repository.
type eagerUploader struct {
	ctx  context.Context
	dst  types.ImageDestination
	bic  types.BlobInfoCache
	log  *slog.Logger
	wg   sync.WaitGroup
	once sync.Once
}

// newEagerUploader opens dest (docker://REF) for blob uploads, or returns
// nil when it cannot (the final push then does all the work).
func newEagerUploader(ctx context.Context, dest string, sys *types.SystemContext, log *slog.Logger) *eagerUploader {
	ref, err := docker.ParseReference(strings.TrimPrefix(dest, "docker:"))
	if err != nil {
		return nil
	}
	dst, err := ref.NewImageDestination(ctx, registry.PinnedTo(sys, reference.Domain(ref.DockerReference())))
	if err != nil {
		log.Debug("eager upload disabled", "dest", dest, "err", err)
		return nil
	}
	return &eagerUploader{ctx: ctx, dst: dst, bic: blobinfocache.DefaultCache(sys), log: log}
}

// follow starts uploading the blob being written at path
// (layer.Compression.Follow).
func (u *eagerUploader) follow(path string) (func(int64), func(error)) {
	f, err := os.Open(path)
	if err != nil {
		u.log.Debug("eager upload: cannot follow the blob", "err", err)
		return func(int64) {}, func(error) {}
	}
	r := &followReader{f: f}
	r.cond = sync.NewCond(&r.mu)
	u.wg.Go(func() {
		defer f.Close()
		info, err := u.dst.PutBlob(u.ctx, r, types.BlobInfo{Digest: "", Size: -1}, u.bic, false)
		r.abandon()
		if err != nil {
			u.log.Debug("eager layer upload failed; the push will upload it", "err", err)
		} else {
			u.log.Debug("layer uploaded while it was written", "digest", info.Digest)
		}
	})
	return r.grow, r.finish
}

// wait lets running uploads finish, then closes the destination.
func (u *eagerUploader) wait() {
	u.once.Do(func() {
		u.wg.Wait()
		u.dst.Close()
	})
}

// followReader reads a file another goroutine is appending to: up to the
// length it was told of, then waits for more, until finish.
type followReader struct {
	f         *os.File
	mu        sync.Mutex
	cond      *sync.Cond
	avail     int64 // bytes written so far
	pos       int64 // bytes read so far
	done      bool  // no more bytes will come
	err       error // the writer failed: the upload must not complete
	abandoned bool  // the upload ended: stop waking it
}

func (r *followReader) grow(n int64) {
	r.mu.Lock()
	if !r.abandoned {
		r.avail = n
		r.cond.Signal()
	}
	r.mu.Unlock()
}

func (r *followReader) finish(err error) {
	r.mu.Lock()
	r.done, r.err = true, err
	r.cond.Signal()
	r.mu.Unlock()
}

func (r *followReader) abandon() {
	r.mu.Lock()
	r.abandoned = true
	r.mu.Unlock()
}

func (r *followReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	for r.pos >= r.avail && !r.done {
		r.cond.Wait()
	}
	avail, done, werr := r.avail, r.done, r.err
	r.mu.Unlock()
	if werr != nil {
		return 0, werr // never a truncated blob
	}
	if r.pos >= avail && done {
		return 0, io.EOF
	}
	if n := avail - r.pos; int64(len(p)) > n {
		p = p[:n]
	}
	k, err := r.f.ReadAt(p, r.pos)
	r.pos += int64(k)
	if errors.Is(err, io.EOF) && k > 0 {
		err = nil
	}
	return k, err
}
