package compress

import (
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// zstdChunk is the input of one zstd frame. Like gzipBlockSize it is fixed,
// because it shapes the output: the bytes depend on it, never on the core
// count.
const zstdChunk = 4 << 20

// parZstd writes a zstd stream as a sequence of independent frames (RFC
// 8878 allows any number; every decoder reads them as one stream), each
// compressed by its own worker, so compression uses every core instead of
// the one a single stream can. Frames are written in input order.
type parZstd struct {
	w       io.Writer
	level   zstd.EncoderLevel
	buf     []byte
	pending chan chan result // in input order, at most one per worker ahead
	wg      sync.WaitGroup
	err     error
	frames  int
	encs    sync.Pool
}

type result struct {
	b   []byte
	err error
}

func newParZstd(w io.Writer, level zstd.EncoderLevel) *parZstd {
	z := &parZstd{w: w, level: level, pending: make(chan chan result, max(runtime.GOMAXPROCS(0), 2))}
	z.encs.New = func() any {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
		if err != nil {
			return err
		}
		return e
	}
	z.wg.Add(1)
	go z.drain()
	return z
}

// drain writes finished frames in order.
func (z *parZstd) drain() {
	defer z.wg.Done()
	for ch := range z.pending {
		r := <-ch
		if z.err != nil {
			continue
		}
		if r.err != nil {
			z.err = r.err
			continue
		}
		if _, err := z.w.Write(r.b); err != nil {
			z.err = err
		}
	}
}

func (z *parZstd) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(zstdChunk-len(z.buf), len(p))
		z.buf = append(z.buf, p[:k]...)
		p = p[k:]
		if len(z.buf) == zstdChunk {
			z.flush()
		}
	}
	return n, nil
}

// flush hands the buffered chunk to a worker (blocking while every worker
// is busy, which bounds memory).
func (z *parZstd) flush() {
	z.frames++
	chunk := z.buf
	z.buf = make([]byte, 0, zstdChunk)
	ch := make(chan result, 1)
	z.pending <- ch
	go func() {
		v := z.encs.Get()
		enc, ok := v.(*zstd.Encoder)
		if !ok {
			ch <- result{err: v.(error)}
			return
		}
		ch <- result{b: enc.EncodeAll(chunk, make([]byte, 0, len(chunk)/2))}
		z.encs.Put(enc)
	}()
}

// Close writes the last frame and waits for all of them.
func (z *parZstd) Close() error {
	if len(z.buf) > 0 || z.frames == 0 {
		z.flush() // an empty input still makes one (empty) frame
	}
	close(z.pending)
	z.wg.Wait()
	return z.err
}
