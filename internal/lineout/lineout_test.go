package lineout

import (
	"bytes"
	"sync"
	"testing"
)

func TestWholeLines(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []string
		flush  bool
		want   string
	}{
		{"one line", []string{"a\n"}, false, "> a\n"},
		{"split writes", []string{"he", "llo\nwor", "ld\n"}, false, "> hello\n> world\n"},
		{"held until newline", []string{"partial"}, false, ""},
		{"flushed tail", []string{"x\ny"}, true, "> x\n> y\n"},
		{"empty lines", []string{"\n\n"}, false, "> \n> \n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			var seen []string
			w := &Writer{W: &out, Prefix: "> ", Line: func(l []byte) { seen = append(seen, string(l)) }}
			for _, s := range tc.writes {
				if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
					t.Fatalf("Write %q: %d, %v", s, n, err)
				}
			}
			if tc.flush {
				w.Flush()
			}
			if out.String() != tc.want {
				t.Errorf("wrote %q, want %q", out.String(), tc.want)
			}
			if got := bytes.Join(toBytes(seen), nil); string(got) != tc.want {
				t.Errorf("Line saw %q", got)
			}
		})
	}
}

func toBytes(ss []string) [][]byte {
	var out [][]byte
	for _, s := range ss {
		out = append(out, []byte(s))
	}
	return out
}

// Writers sharing a lock never interleave within a line.
func TestSharedLock(t *testing.T) {
	var out bytes.Buffer
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range []string{"a: ", "b: "} {
		w := &Writer{Mu: &mu, W: &out, Prefix: p}
		wg.Go(func() {
			for range 200 {
				w.Write([]byte("x"))
				w.Write([]byte("y\n"))
			}
		})
	}
	wg.Wait()
	for _, l := range bytes.Split(bytes.TrimSuffix(out.Bytes(), []byte("\n")), []byte("\n")) {
		if s := string(l); s != "a: xy" && s != "b: xy" {
			t.Fatalf("torn line %q", s)
		}
	}
}
