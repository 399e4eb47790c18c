package layer

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

func TestBufPipe(t *testing.T) {
	data := make([]byte, 5*splitPipeSize+12345)
	for i := range data {
		data[i] = byte(rand.IntN(256))
	}
	for _, c := range []struct {
		name     string
		maxWrite int
		werr     error
	}{
		{"small writes", 700, nil},
		{"writes larger than the ring", 3 * splitPipeSize, nil},
		{"writer fails", 4096, io.ErrUnexpectedEOF},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newBufPipe()
			go func() {
				for b := data; len(b) > 0; {
					n := min(len(b), 1+rand.IntN(c.maxWrite))
					if _, err := p.Write(b[:n]); err != nil {
						t.Error(err)
						return
					}
					b = b[n:]
				}
				p.CloseWrite(c.werr)
			}()
			var got bytes.Buffer
			buf := make([]byte, 3000)
			var err error
			for {
				var n int
				n, err = p.Read(buf[:1+rand.IntN(len(buf)-1)])
				got.Write(buf[:n])
				if err != nil {
					break
				}
			}
			want := c.werr
			if want == nil {
				want = io.EOF
			}
			if err != want || !bytes.Equal(got.Bytes(), data) {
				t.Errorf("read %d of %d bytes (equal %v), ended with %v, want %v", got.Len(), len(data), bytes.Equal(got.Bytes(), data), err, want)
			}
			p.release()
		})
	}
	t.Run("reader stops", func(t *testing.T) {
		p := newBufPipe()
		stop := errors.New("parser failed")
		done := make(chan error)
		go func() {
			_, err := p.Write(make([]byte, 3*splitPipeSize)) // more than the ring: blocks until the reader stops
			done <- err
		}()
		p.CloseRead(stop)
		if err := <-done; err != stop {
			t.Errorf("write after the reader stopped: %v, want %v", err, stop)
		}
	})
}
