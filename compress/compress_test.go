package compress

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

func TestKindString(t *testing.T) {
	t.Parallel()
	for k, want := range map[Kind]string{None: "none", Gzip: "gzip", Bzip2: "bzip2", Xz: "xz", Zstd: "zstd", Kind(42): "compress.Kind(42)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}

// payload mixes compressible text and random bytes, larger than one pgzip block.
func payload() []byte {
	var b bytes.Buffer
	rng := rand.New(rand.NewPCG(1, 2))
	for b.Len() < 3<<20 {
		b.WriteString(strings.Repeat("layer data ", 100))
		for range 4096 {
			b.WriteByte(byte(rng.Uint32()))
		}
	}
	return b.Bytes()
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	data := payload()
	for _, tt := range []struct {
		kind  Kind
		level int
	}{{None, 0}, {Gzip, 0}, {Gzip, 1}, {Gzip, 9}, {Zstd, 0}, {Zstd, 1}, {Zstd, 19}, {Xz, 0}} {
		t.Run(tt.kind.String(), func(t *testing.T) {
			t.Parallel()
			var blob bytes.Buffer
			w, err := NewWriter(&blob, tt.kind, tt.level)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(data); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			r, kind, err := Decompress(bytes.NewReader(blob.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if kind != tt.kind {
				t.Errorf("Decompress detected %v, want %v", kind, tt.kind)
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("round trip changed the data (%d bytes in, %d out)", len(data), len(got))
			}
		})
	}
}

func TestBzip2(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("bzip2"); err != nil {
		t.Fatalf("bzip2 is needed to make a fixture (hack/install-deps.sh installs it): %v", err)
	}
	cmd := exec.Command("bzip2", "-c")
	cmd.Stdin = strings.NewReader("hello bzip2\n")
	blob, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	r, kind, err := Decompress(bytes.NewReader(blob))
	if err != nil || kind != Bzip2 {
		t.Fatalf("Decompress = %v, %v", kind, err)
	}
	got, _ := io.ReadAll(r)
	if string(got) != "hello bzip2\n" {
		t.Errorf("got %q", got)
	}
	if _, err := NewWriter(io.Discard, Bzip2, 0); err == nil {
		t.Error("NewWriter(Bzip2) succeeded; want an unsupported error")
	}
}

func TestShortAndEmpty(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "a", "abcdef", "abcdefgh"} {
		r, kind, err := Decompress(strings.NewReader(in))
		if err != nil || kind != None {
			t.Fatalf("Decompress(%q) = %v, %v", in, kind, err)
		}
		got, _ := io.ReadAll(r)
		if string(got) != in {
			t.Errorf("Decompress(%q) yielded %q", in, got)
		}
	}
}

// Digests of pushed blobs must not depend on the builder's core count.
func TestWritersDeterministic(t *testing.T) {
	t.Parallel()
	data := payload()
	var ours bytes.Buffer
	w, _ := NewWriter(&ours, Gzip, 0)
	w.Write(data)
	w.Close()
	var serial bytes.Buffer
	gw, _ := pgzip.NewWriterLevel(&serial, pgzip.BestSpeed) // our default level
	gw.SetConcurrency(gzipBlockSize, 1)
	gw.Write(data)
	gw.Close()
	if !bytes.Equal(ours.Bytes(), serial.Bytes()) {
		t.Error("gzip output depends on concurrency")
	}

	ours.Reset()
	serial.Reset()
	w, _ = NewWriter(&ours, Zstd, 0)
	w.Write(data)
	w.Close()
	zw, _ := zstd.NewWriter(&serial, zstd.WithEncoderConcurrency(1))
	zw.Write(data)
	zw.Close()
	if !bytes.Equal(ours.Bytes(), serial.Bytes()) {
		t.Error("zstd output depends on concurrency")
	}
}

func TestBadLevel(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		kind  Kind
		level int
	}{{Gzip, 42}, {Zstd, 23}, {Zstd, -1}, {Kind(9), 0}} {
		if _, err := NewWriter(io.Discard, tt.kind, tt.level); err == nil {
			t.Errorf("NewWriter(%v, %d) succeeded", tt.kind, tt.level)
		}
	}
}

func FuzzDecompress(f *testing.F) {
	for _, k := range []Kind{None, Gzip, Zstd, Xz} {
		var b bytes.Buffer
		w, _ := NewWriter(&b, k, 0)
		w.Write([]byte("seed data seed data"))
		w.Close()
		f.Add(b.Bytes())
	}
	f.Fuzz(func(t *testing.T, blob []byte) {
		r, _, err := Decompress(bytes.NewReader(blob))
		if err != nil {
			return
		}
		// Bounded read: a hostile stream must fail or end, never panic.
		io.Copy(io.Discard, io.LimitReader(r, 64<<20))
		r.Close()
	})
}
