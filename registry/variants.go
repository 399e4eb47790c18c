package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/builder-dev/builder/content"
	"go.podman.io/storage/pkg/ioutils"

	"github.com/builder-dev/builder/compress"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Variants records, for a layer's diff ID, the compressed blob made from it
// (or pulled for it) that sits in the blob store: the index that lets a
// layer be compressed once in its life. Images in containers-storage serve
// uncompressed layers; a push looks their diff IDs up here and sends the
// blob kept from the first compression (or from the pull), so digests stay
// stable and nothing is compressed again. Entries are small files written
// by rename, so concurrent builders never see a torn one; the last writer
// wins, and every entry names a valid blob.
type Variants struct {
	dir   string
	Blobs *content.Store
}

// OpenVariants opens (creating) the index in dir over blobs.
func OpenVariants(dir string, blobs *content.Store) (*Variants, error) {
	if blobs == nil {
		return nil, errors.New("variants: no blob store")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("variants index: %w", err)
	}
	return &Variants{dir: dir, Blobs: blobs}, nil
}

func (v *Variants) path(diffID digest.Digest, k compress.Kind) string {
	return filepath.Join(v.dir, k.String(), diffID.Algorithm().String()+"-"+diffID.Encoded()+".json")
}

// KindOf is the compression of a layer media type (compress.None for
// uncompressed or unknown types).
func KindOf(mediaType string) compress.Kind {
	switch mediaType {
	case ocispec.MediaTypeImageLayerGzip, "application/vnd.docker.image.rootfs.diff.tar.gzip":
		return compress.Gzip
	case ocispec.MediaTypeImageLayerZstd, "application/vnd.docker.image.rootfs.diff.tar.zstd":
		return compress.Zstd
	}
	return compress.None
}

// Lookup returns the descriptor of the k-compressed blob of diffID if it is
// recorded and the blob is in the store with the recorded size.
func (v *Variants) Lookup(diffID digest.Digest, k compress.Kind) (ocispec.Descriptor, bool) {
	if diffID.Validate() != nil {
		return ocispec.Descriptor{}, false
	}
	b, err := os.ReadFile(v.path(diffID, k))
	if err != nil {
		return ocispec.Descriptor{}, false
	}
	var d ocispec.Descriptor
	if json.Unmarshal(b, &d) != nil || d.Digest.Validate() != nil || KindOf(d.MediaType) != k {
		return ocispec.Descriptor{}, false
	}
	if n, err := v.Blobs.Stat(d.Digest); err != nil || n != d.Size {
		return ocispec.Descriptor{}, false // pruned or damaged: compress again
	}
	return ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}, true
}

// Record notes that desc (a compressed blob in the store) is diffID's
// variant for desc's compression. Uncompressed descriptors are ignored.
func (v *Variants) Record(diffID digest.Digest, desc ocispec.Descriptor) error {
	k := KindOf(desc.MediaType)
	if k == compress.None {
		return nil
	}
	if err := diffID.Validate(); err != nil {
		return fmt.Errorf("variants: diff ID: %w", err)
	}
	if cur, ok := v.Lookup(diffID, k); ok && cur.Digest == desc.Digest {
		return nil
	}
	b, err := json.Marshal(ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size})
	if err != nil {
		return err
	}
	p := v.path(diffID, k)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("variants index: %w", err)
	}
	// No fsync: a lost entry only costs one compression.
	if err := ioutils.AtomicWriteFileWithOpts(p, b, 0o600, &ioutils.AtomicFileWriterOptions{NoSync: true}); err != nil {
		return fmt.Errorf("variants index: %w", err)
	}
	return nil
}
