package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/builder-dev/builder/content"

	"github.com/builder-dev/builder/compress"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func sampleTar(t *testing.T) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := bytes.Repeat([]byte("layer data "), 10000)
	tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	tw.Write(body)
	tw.Close()
	return buf.Bytes()
}

func TestWriteComputesBothDigests(t *testing.T) {
	tarBytes := sampleTar(t)
	wantDiff := fmt.Sprintf("sha256:%x", sha256.Sum256(tarBytes))
	for _, tc := range []struct {
		kind      compress.Kind
		mediaType string
	}{
		{compress.None, ocispec.MediaTypeImageLayer},
		{compress.Gzip, ocispec.MediaTypeImageLayerGzip},
		{compress.Zstd, ocispec.MediaTypeImageLayerZstd},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			blobs, err := content.OpenStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			l, err := Write(context.Background(), blobs, Compression{Kind: tc.kind}, func(w io.Writer) error {
				_, err := w.Write(tarBytes)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if l.DiffID().String() != wantDiff {
				t.Errorf("diff_id %s, want %s", l.DiffID(), wantDiff)
			}
			d := l.Descriptor()
			if d.MediaType != tc.mediaType {
				t.Errorf("media type %s, want %s", d.MediaType, tc.mediaType)
			}
			rc, err := l.Open(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			blob, _ := io.ReadAll(rc)
			rc.Close()
			if got := fmt.Sprintf("sha256:%x", sha256.Sum256(blob)); got != d.Digest.String() || int64(len(blob)) != d.Size {
				t.Errorf("blob digest/size %s/%d, descriptor %s/%d", got, len(blob), d.Digest, d.Size)
			}
			if tc.kind == compress.None && d.Digest != l.DiffID() {
				t.Errorf("uncompressed layer digest %s != diff_id %s", d.Digest, l.DiffID())
			}
			u, err := Uncompressed(context.Background(), l)
			if err != nil {
				t.Fatal(err)
			}
			back, _ := io.ReadAll(u)
			u.Close()
			if !bytes.Equal(back, tarBytes) {
				t.Errorf("Uncompressed round trip differs")
			}
		})
	}
}

func TestWriteProducerErrorLeavesNoBlob(t *testing.T) {
	blobs, err := content.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = Write(context.Background(), blobs, Compression{Kind: compress.Gzip}, func(w io.Writer) error {
		w.Write([]byte("half"))
		return fmt.Errorf("walk failed")
	})
	if err == nil {
		t.Fatal("want error")
	}
}

// With RawDir, a compressed layer also leaves its tar in a scratch file, and RawForm serves
// that file as an uncompressed layer with the same diff ID.
func TestWriteKeepsRawCopy(t *testing.T) {
	tarBytes := sampleTar(t)
	blobs, err := content.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	raw := t.TempDir()
	l, err := Write(context.Background(), blobs, Compression{Kind: compress.Gzip, RawDir: raw}, func(w io.Writer) error {
		_, err := w.Write(tarBytes)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	r, ok := RawForm(l)
	if !ok {
		t.Fatal("no raw form")
	}
	d := r.Descriptor()
	if d.MediaType != ocispec.MediaTypeImageLayer || d.Digest != l.DiffID() || d.Size != int64(len(tarBytes)) {
		t.Errorf("raw descriptor %+v, diff ID %s", d, l.DiffID())
	}
	rc, err := r.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, tarBytes) {
		t.Error("raw copy differs from the tar")
	}
	// A failed write leaves no scratch file; an uncompressed layer needs none.
	Write(context.Background(), blobs, Compression{Kind: compress.Gzip, RawDir: raw}, func(w io.Writer) error {
		w.Write([]byte("half"))
		return fmt.Errorf("walk failed")
	})
	if ents, _ := os.ReadDir(raw); len(ents) != 2 {
		t.Errorf("%d files in the raw dir, want the tar and its tar-split (a failed write keeps none)", len(ents))
	}
	u, err := Write(context.Background(), blobs, Compression{Kind: compress.None, RawDir: raw}, func(w io.Writer) error {
		_, err := w.Write(tarBytes)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Uncompressed with RawDir: the scratch file is the only copy.
	if !Scratch(u) || u.DiffID() != l.DiffID() || u.Descriptor().Digest != l.DiffID() {
		t.Errorf("scratch layer %+v (diff ID %s), want diff ID %s", u.Descriptor(), u.DiffID(), l.DiffID())
	}
	if _, err := blobs.Stat(u.DiffID()); err == nil {
		t.Error("a scratch layer was also written to the blob store")
	}
	rc, err = u.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, tarBytes) {
		t.Error("scratch layer differs from the tar")
	}
}
