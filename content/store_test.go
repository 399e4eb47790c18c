package content

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestBlobs(t *testing.T) {
	b, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := "hello blobs"
	want := digest.FromString(data)
	tests := []struct {
		name     string
		expected digest.Digest
		wantErr  string
	}{
		{"no expectation", "", ""},
		{"matching expectation", want, ""},
		{"mismatch", digest.FromString("other"), "digest mismatch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, n, err := b.Put(strings.NewReader(data), tc.expected)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || d != want || n != int64(len(data)) {
				t.Fatalf("Put = %s %d %v", d, n, err)
			}
			f, err := b.Open(d)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(f)
			f.Close()
			if string(got) != data {
				t.Errorf("content %q", got)
			}
		})
	}
	// Nothing is left in tmp: aborted and committed ingests both clean up.
	left, _ := os.ReadDir(filepath.Join(b.dir, "tmp"))
	if len(left) != 0 {
		t.Errorf("tmp not empty: %v", left)
	}
	if _, err := b.Open(digest.FromString("absent")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open(absent) = %v, want ErrNotFound", err)
	}
	if _, err := b.Stat(digest.FromString("absent")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat(absent) = %v, want ErrNotFound", err)
	}
}

func TestIngestAbortLeavesNothing(t *testing.T) {
	b, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w, err := b.Ingest()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("partial"))
	w.Close()
	if _, err := b.Stat(digest.FromString("partial")); !errors.Is(err, ErrNotFound) {
		t.Errorf("aborted blob is visible: %v", err)
	}
}

func TestVerify(t *testing.T) {
	data := "exactly these bytes"
	d := digest.FromString(data)
	for _, tc := range []struct {
		name, body string
		d          digest.Digest
		size       int64
		err        string
	}{
		{"exact", data, d, int64(len(data)), ""},
		{"size unknown", data, d, -1, ""},
		{"a few bytes short", data[:len(data)-3], d, int64(len(data)), "16 bytes, its descriptor says 19"},
		{"4 KiB long", data + strings.Repeat("x", 4096), d, int64(len(data)), "longer than its size 19"},
		{"declared short", data, d, int64(len(data)) - 3, "longer than its size 16"},
		{"declared long", data, d, int64(len(data)) + 4096, "19 bytes, its descriptor says 4115"},
		{"other content", strings.ToUpper(data), d, int64(len(data)), "does not match its digest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := io.ReadAll(Verify(io.NopCloser(strings.NewReader(tc.body)), tc.d, tc.size))
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
			b, _ := OpenStore(t.TempDir())
			if err := b.PutVerified(strings.NewReader(tc.body), ocispec.Descriptor{Digest: tc.d, Size: tc.size}); !errors.Is(err, ErrMismatch) {
				t.Fatalf("PutVerified: %v", err)
			}
			if _, err := b.Stat(tc.d); !errors.Is(err, ErrNotFound) {
				t.Errorf("a mismatching blob was kept: %v", err)
			}
		})
	}
}

// A blob that never ends is refused after size+1 bytes, not read forever.
func TestVerifyEndless(t *testing.T) {
	_, err := io.Copy(io.Discard, Verify(io.NopCloser(endless{}), digest.FromString("x"), 1<<20))
	if !errors.Is(err, ErrMismatch) {
		t.Fatal(err)
	}
}

type endless struct{}

func (endless) Read(p []byte) (int, error) { return len(p), nil }
