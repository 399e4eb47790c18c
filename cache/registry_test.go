package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/builder-dev/builder/content"
	"github.com/builder-dev/builder/platform"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestNewRemoteForms(t *testing.T) {
	for _, tc := range []struct {
		ref, want, err string
	}{
		{"quay.io/team/cache", "quay.io/team/cache", ""},
		{"docker://localhost:5000/cache", "localhost:5000/cache", ""},
		{"oci:/var/cache/layers", "oci:/var/cache/layers", ""},
		{"quay.io/team/cache:v1", "", "without a tag"},
		{"oci:/dir:tag", "", "oci:DIR"},
		{"containers-storage:cache", "", "cannot hold a cache"},
		{"docker-archive:/x.tar", "", "cannot hold a cache"},
	} {
		r, err := NewRemote(tc.ref, nil)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want %q", tc.ref, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.ref, err)
		case tc.err == "" && r.String() != tc.want:
			t.Errorf("%s: %s, want %s", tc.ref, r, tc.want)
		}
	}
}

// An OCI layout holds cache entries as a registry does: export, then a
// second blob store fetches the record and the verified layer blob.
func TestRemoteLayoutRoundTrip(t *testing.T) {
	ctx := context.Background()
	a, _ := content.OpenStore(t.TempDir())
	b, _ := content.OpenStore(t.TempDir())
	data := []byte("layer bytes")
	d, n, err := a.Put(strings.NewReader(string(data)), "")
	if err != nil {
		t.Fatal(err)
	}
	k := Root(digest.Digest("sha256:"+strings.Repeat("a", 64)), platform.Platform{OS: "linux", Architecture: "amd64"}).Next([]byte("RUN true"))
	rec := Record{Key: k.Hex(), Step: "RUN true", Created: time.Unix(1, 0).UTC(),
		Inputs: []Input{{Name: "env TOKEN", Digest: DigestOf("env", []byte("1234"))}},
		Layer:  &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: n},
		DiffID: digest.NewDigestFromBytes(digest.SHA256, func() []byte { s := sha256.Sum256(data); return s[:] }())}
	r, err := NewRemote("oci:"+filepath.Join(t.TempDir(), "cache"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Fetch(ctx, k, b); !errors.Is(err, ErrMiss) {
		t.Fatalf("fetch from an empty cache: %v, want a miss", err)
	}
	if err := r.Export(ctx, rec, func() (io.ReadCloser, error) { return a.Open(d) }); err != nil {
		t.Fatal(err)
	}
	got, err := r.Fetch(ctx, k, b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Layer.Digest != d || got.DiffID != rec.DiffID {
		t.Errorf("fetched %+v, want %+v", got, rec)
	}
	// A digest of one short value could be guessed: none leaves the machine.
	if len(got.Inputs) != 0 {
		t.Errorf("the exported record carries per-value digests: %+v", got.Inputs)
	}
	if sz, err := b.Stat(d); err != nil || sz != n {
		t.Errorf("layer blob not in the second store: %v", err)
	}
	if _, err := r.Fetch(ctx, k.Next([]byte("other")), b); !errors.Is(err, ErrMiss) {
		t.Errorf("fetch of another key: %v, want a miss", err)
	}
}
