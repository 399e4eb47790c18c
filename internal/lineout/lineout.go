// Package lineout writes output whole lines at a time, each led by a
// prefix: the lines of RUN steps, stages and platforms running at once stay
// readable.
package lineout

import (
	"bytes"
	"io"
	"sync"
)

// Writer writes each line written to it to W, after Prefix. Mu, when
// several Writers share it, keeps their lines apart; nil gives the Writer
// a lock of its own. Line, when set, sees each prefixed line as written.
type Writer struct {
	Mu     *sync.Mutex
	W      io.Writer
	Prefix string
	Line   func(line []byte)

	own  sync.Mutex
	buf  []byte
	line []byte
}

func (l *Writer) lock() func() {
	mu := l.Mu
	if mu == nil {
		mu = &l.own
	}
	mu.Lock()
	return mu.Unlock
}

func (l *Writer) Write(b []byte) (int, error) {
	defer l.lock()()
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		err := l.emit(l.buf[:i])
		l.buf = l.buf[i+1:]
		if err != nil {
			return 0, err
		}
	}
}

// Flush writes a last line that has no newline yet.
func (l *Writer) Flush() error {
	defer l.lock()()
	if len(l.buf) == 0 {
		return nil
	}
	err := l.emit(l.buf)
	l.buf = nil
	return err
}

func (l *Writer) emit(line []byte) error {
	l.line = append(append(append(l.line[:0], l.Prefix...), line...), '\n')
	if l.Line != nil {
		l.Line(l.line)
	}
	_, err := l.W.Write(l.line)
	return err
}
