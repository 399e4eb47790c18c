package compress

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/pgzip"
)

func TestDetect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		head []byte
		want Kind
	}{
		{"empty", nil, None},
		{"tar", []byte("etc/\x00\x00\x00"), None},
		{"gzip", []byte{0x1f, 0x8b, 8, 0, 0, 0}, Gzip},
		{"bzip2", []byte("BZh91AY"), Bzip2},
		{"bzip2 text lookalike", []byte("BZhello"), None},
		{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0}, Xz},
		{"xz truncated", []byte{0xfd, '7', 'z'}, None},
		{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0}, Zstd},
		{"zstd skippable", []byte{0x5e, 0x2a, 0x4d, 0x18, 0, 0}, Zstd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Detect(tt.head); got != tt.want {
				t.Errorf("Detect(%q) = %v, want %v", tt.head, got, tt.want)
			}
		})
	}
}

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
		t.Skip("bzip2 binary not installed; stdlib has no bzip2 writer to make a fixture")
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

	// zstd: frames of fixed size, each made by one worker: the same bytes
	// whatever the core count.
	ours.Reset()
	serial.Reset()
	w, _ = NewWriter(&ours, Zstd, 0)
	w.Write(data)
	w.Close()
	prev := runtime.GOMAXPROCS(1)
	zw, _ := NewWriter(&serial, Zstd, 0)
	zw.Write(data)
	zw.Close()
	runtime.GOMAXPROCS(prev)
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

// A zstd stream of many frames (inputs larger than one chunk, written in
// odd-sized pieces) decodes to the input, with the reference decoder too.
func TestZstdFrames(t *testing.T) {
	var data []byte
	for len(data) < 3*zstdChunk+12345 {
		data = append(data, payload()...)
	}
	data = data[:3*zstdChunk+12345]
	var out bytes.Buffer
	w, err := NewWriter(&out, Zstd, 0)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 100003 {
		w.Write(data[off:min(off+100003, len(data))])
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, kind, err := Decompress(bytes.NewReader(out.Bytes()))
	if err != nil || kind != Zstd {
		t.Fatalf("decompress: %v %v", kind, err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("round trip: %d bytes, err %v", len(got), err)
	}
	// The reference decoder (Debian's zstd, installed by make deps).
	cmd := exec.Command("zstd", "-d", "-c")
	cmd.Stdin = bytes.NewReader(out.Bytes())
	ref, err := cmd.Output()
	if err != nil || !bytes.Equal(ref, data) {
		t.Errorf("zstd -d: %d bytes, err %v", len(ref), err)
	}
	// Empty input: one empty frame, a valid stream.
	out.Reset()
	w, _ = NewWriter(&out, Zstd, 0)
	w.Close()
	r, _, err = Decompress(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || len(got) != 0 {
		t.Errorf("empty stream: %q %v", got, err)
	}
}
