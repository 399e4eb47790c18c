package content

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
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
