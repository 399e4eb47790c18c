package registry

// Guards on what a registry sends: a transfer that stops moving is
// abandoned (and retried) instead of hanging forever, and a layer that
// decompresses to more than the limit (a gzip bomb) is refused while it is
// downloaded, before anything is written out of it.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/builder-dev/builder/compress"
	"go.podman.io/image/v5/types"
)

const (
	// DefaultMaxLayerSize bounds a layer's uncompressed size (--max-layer-size).
	DefaultMaxLayerSize int64 = 64 << 30
	// DefaultStallTimeout abandons a transfer that moved no byte for this
	// long (--stall-timeout).
	DefaultStallTimeout = 60 * time.Second
)

var (
	// ErrLayerTooLarge: a layer is larger than --max-layer-size uncompressed.
	ErrLayerTooLarge = errors.New("layer larger than --max-layer-size uncompressed")
	// ErrStalled: no byte moved for --stall-timeout (retryable).
	ErrStalled = errors.New("transfer stalled")
)

// Limits are the guards of one command's transfers; zero fields take the
// defaults.
type Limits struct {
	MaxLayerSize int64
	StallTimeout time.Duration
}

func (l Limits) maxLayer() int64 {
	if l.MaxLayerSize > 0 {
		return l.MaxLayerSize
	}
	return DefaultMaxLayerSize
}

func (l Limits) stall() time.Duration {
	if l.StallTimeout > 0 {
		return l.StallTimeout
	}
	return DefaultStallTimeout
}

// Guard wraps a blob stream from a registry: reads that move nothing for
// the stall timeout fail with ErrStalled; a layer (by media type) is
// decompressed alongside and fails with ErrLayerTooLarge once its
// uncompressed bytes pass the limit. cancel ends the request rc reads
// (the context its GetBlob was given): a stalled read is cut by it, never
// by closing rc under the Read (containers/image's reader is not safe for
// that: it crashed once, closed mid-read).
func (l Limits) Guard(rc io.ReadCloser, bi types.BlobInfo, cancel context.CancelFunc) (io.ReadCloser, error) {
	g := &guard{rc: rc, stall: l.stall(), cancel: cancel}
	kind := KindOf(bi.MediaType)
	isLayer := bi.MediaType != "" && (kind != compress.None || uncompressedLayer(bi.MediaType))
	if !isLayer {
		return g, nil
	}
	max := l.maxLayer()
	if kind == compress.None {
		if bi.Size > max {
			rc.Close()
			cancel()
			return nil, fmt.Errorf("blob %s: %d bytes: %w (%d)", bi.Digest, bi.Size, ErrLayerTooLarge, max)
		}
		g.limit = max
		return g, nil
	}
	g.startInflating(max, bi)
	return g, nil
}

func uncompressedLayer(mediaType string) bool {
	switch mediaType {
	case "application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar":
		return true
	}
	return false
}

type guard struct {
	rc      io.ReadCloser
	cancel  context.CancelFunc
	stall   time.Duration
	stalled atomic.Bool
	limit   int64 // uncompressed layers: bytes allowed (0: none)
	n       int64

	// compressed layers: the bytes read are fed to a decompressor that
	// only counts.
	pw   *io.PipeWriter
	done chan error
	once sync.Once
}

func (g *guard) startInflating(max int64, bi types.BlobInfo) {
	pr, pw := io.Pipe()
	g.pw, g.done = pw, make(chan error, 1)
	go func() {
		zr, _, err := compress.Decompress(pr)
		if err == nil {
			var n int64
			n, err = io.Copy(io.Discard, io.LimitReader(zr, max+1))
			zr.Close()
			if err == nil && n > max {
				err = fmt.Errorf("blob %s: %w (%d)", bi.Digest, ErrLayerTooLarge, max)
			}
		}
		if err != nil && !errors.Is(err, ErrLayerTooLarge) {
			err = nil // not ours to judge: the consumer decompresses too and says what is wrong
		}
		pr.CloseWithError(err)
		io.Copy(io.Discard, pr) // never block the download
		g.done <- err
	}()
}

func (g *guard) Read(p []byte) (int, error) {
	t := time.AfterFunc(g.stall, func() { g.stalled.Store(true); g.cancel() })
	n, err := g.rc.Read(p)
	t.Stop()
	if g.stalled.Load() {
		return n, fmt.Errorf("%w: no byte for %s", ErrStalled, g.stall)
	}
	g.n += int64(n)
	if g.limit > 0 && g.n > g.limit {
		return n, fmt.Errorf("%w (%d)", ErrLayerTooLarge, g.limit)
	}
	if g.pw != nil && n > 0 {
		if _, werr := g.pw.Write(p[:n]); werr != nil && errors.Is(werr, ErrLayerTooLarge) {
			return n, werr
		}
	}
	if err == io.EOF && g.pw != nil {
		g.pw.Close()
		if derr := <-g.done; derr != nil {
			g.done <- derr
			return n, derr
		}
		g.done <- nil
	}
	return n, err
}

func (g *guard) Close() error {
	g.once.Do(func() {
		if g.pw != nil {
			g.pw.CloseWithError(errors.New("closed"))
		}
	})
	err := g.rc.Close()
	g.cancel()
	return err
}
