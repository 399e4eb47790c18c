package layer

import (
	"io"
	"sync"
)

// bufPipe is an in-memory pipe with a bounded buffer: a Write returns as
// soon as its bytes are buffered, so the writer (the layer writer) and the
// reader (the tar-split's parser) run side by side instead of in lockstep,
// as they do through io.Pipe, where every Write waits until the reader has
// taken all of it.
type bufPipe struct {
	mu    sync.Mutex
	cond  sync.Cond // signalled on every change of buf, rerr or werr
	buf   []byte    // ring
	start int       // read position in buf
	n     int       // bytes buffered
	werr  error     // the writer closed (io.EOF) or failed
	rerr  error     // the reader stopped: writes fail with it
}

// pipeBufs keeps the rings of finished pipes (the layers of a build are
// written one after the other, or a few at once).
var pipeBufs = sync.Pool{New: func() any { b := make([]byte, splitPipeSize); return &b }}

func newBufPipe() *bufPipe {
	p := &bufPipe{buf: *pipeBufs.Get().(*[]byte)}
	p.cond.L = &p.mu
	return p
}

// release gives the ring back; neither side may use the pipe after it.
func (p *bufPipe) release() {
	b := p.buf
	p.buf = nil
	pipeBufs.Put(&b)
}

func (p *bufPipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	written := 0
	for len(b) > 0 {
		for p.n == len(p.buf) && p.rerr == nil {
			p.cond.Wait()
		}
		if p.rerr != nil {
			return written, p.rerr
		}
		end := (p.start + p.n) % len(p.buf)
		room := len(p.buf) - p.n
		if end+room > len(p.buf) {
			room = len(p.buf) - end // up to the ring's end; the rest next round
		}
		c := copy(p.buf[end:end+room], b)
		p.n += c
		written += c
		b = b[c:]
		p.cond.Broadcast()
	}
	return written, nil
}

func (p *bufPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.n == 0 && p.werr == nil {
		p.cond.Wait()
	}
	if p.n == 0 {
		return 0, p.werr
	}
	end := min(p.start+p.n, len(p.buf))
	c := copy(b, p.buf[p.start:end])
	p.start = (p.start + c) % len(p.buf)
	p.n -= c
	p.cond.Broadcast()
	return c, nil
}

// CloseWrite ends the stream: the reader gets err (nil: io.EOF) once it
// has read what is buffered.
func (p *bufPipe) CloseWrite(err error) {
	if err == nil {
		err = io.EOF
	}
	p.mu.Lock()
	if p.werr == nil {
		p.werr = err
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

// CloseRead stops the reader's side: pending and later writes fail with
// err, and nothing more is buffered.
func (p *bufPipe) CloseRead(err error) {
	if err == nil {
		err = io.ErrClosedPipe
	}
	p.mu.Lock()
	if p.rerr == nil {
		p.rerr = err
	}
	p.n = 0
	p.cond.Broadcast()
	p.mu.Unlock()
}
