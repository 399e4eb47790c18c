package cache

// The remote layer cache: one registry repository, one tag per step key
// (the key's hex). Each entry is an OCI manifest whose config is the
// Record (media type recordMediaType) and whose only layer, if any, is the
// step's layer blob as stored locally. Builds on other machines find an
// entry by key, fetch the blob, verify it against its digest, and add both
// to their local index. This is the only file of the package that knows
// containers/image.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/builder-dev/builder/content"
	"github.com/builder-dev/builder/registry"
	"github.com/distribution/reference"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"
)

const recordMediaType = "application/vnd.builder.cache.record.v1+json"

// Remote is a cache repository in a registry, or an OCI layout on disk
// (--cache-to, --cache-from).
type Remote struct {
	repo   string // registry/name, or the layout directory
	layout bool   // oci:DIR
	sys    *types.SystemContext
	mu     sync.Mutex // an OCI layout's index.json takes one writer at a time
	blobMu sync.Map   // digest → *sync.Mutex: entries sharing a blob are exported one at a time
}

// NewRemote returns the cache at ref: "REGISTRY/NAME" or
// "docker://REGISTRY/NAME" (no tag: the tags are the step keys), or
// "oci:DIR", reached with sys (auth, TLS, registries.conf).
func NewRemote(ref string, sys *types.SystemContext) (*Remote, error) {
	if dir, ok := strings.CutPrefix(ref, "oci:"); ok {
		if dir == "" || strings.Contains(dir, ":") {
			return nil, fmt.Errorf("cache %q: want oci:DIR (the tags are the step keys)", ref)
		}
		return &Remote{repo: dir, layout: true, sys: sys}, nil
	}
	for _, t := range []string{"containers-storage:", "docker-archive:", "oci-archive:", "dir:", "docker-daemon:"} {
		if strings.HasPrefix(ref, t) {
			return nil, fmt.Errorf("cache %q: %s cannot hold a cache (use REGISTRY/NAME, docker://REGISTRY/NAME or oci:DIR)", ref, strings.TrimSuffix(t, ":"))
		}
	}
	repo := strings.TrimPrefix(ref, "docker://")
	if repo == "" || strings.Contains(repo, "@") || strings.Contains(repo[strings.LastIndex(repo, "/")+1:], ":") {
		return nil, fmt.Errorf("cache repository %q: want REGISTRY/NAME without a tag or digest", ref)
	}
	if _, err := docker.ParseReference("//" + repo + ":probe"); err != nil {
		return nil, fmt.Errorf("cache repository %q: %w", ref, err)
	}
	return &Remote{repo: repo, sys: sys}, nil
}

func (r *Remote) String() string {
	if r.layout {
		return "oci:" + r.repo
	}
	return r.repo
}

func (r *Remote) ref(tag string) (types.ImageReference, error) {
	if r.layout {
		return layout.NewReference(r.repo, tag)
	}
	return docker.ParseReference("//" + r.repo + ":" + tag)
}

// mountMediaType marks a cache-mount entry; its config names the mount.
const mountMediaType = "application/vnd.builder.cache.mount.v1+json"

// mountTag is the tag of cache mount id's latest contents.
func mountTag(id string) string { return "mount-" + DigestOf("mount", []byte(id)).Encoded() }

// getEntry reads the entry tagged tag: its config (checked against its
// digest and media type) and its layers. ErrMiss when there is none.
func (r *Remote) getEntry(ctx context.Context, tag, mediaType string) (types.ImageSource, []byte, []ocispec.Descriptor, error) {
	ref, err := r.ref(tag)
	if err != nil {
		return nil, nil, nil, err
	}
	src, err := ref.NewImageSource(ctx, r.sys)
	if err != nil {
		if r.layout {
			return nil, nil, nil, ErrMiss // no layout yet, or no such tag in it
		}
		return nil, nil, nil, fmt.Errorf("cache %s: %w", r.repo, err)
	}
	raw, _, err := src.GetManifest(ctx, nil)
	if err != nil {
		src.Close()
		return nil, nil, nil, ErrMiss // unknown tag (the registry's 404), or unreadable: a miss either way
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil || m.Config.MediaType != mediaType || len(m.Layers) > 1 {
		src.Close()
		return nil, nil, nil, ErrMiss
	}
	rc, _, err := src.GetBlob(ctx, types.BlobInfo{Digest: m.Config.Digest, Size: m.Config.Size}, none.NoCache)
	if err != nil {
		src.Close()
		return nil, nil, nil, fmt.Errorf("cache %s: entry %s: %w", r.repo, tag, err)
	}
	if m.Config.Size < 0 || m.Config.Size > 1<<20 {
		rc.Close()
		src.Close()
		return nil, nil, nil, fmt.Errorf("cache %s: entry %s: config of %d bytes", r.repo, tag, m.Config.Size)
	}
	cfg, err := io.ReadAll(content.Verify(rc, m.Config.Digest, m.Config.Size))
	rc.Close()
	if err != nil {
		err = fmt.Errorf("cache %s: entry %s: config: %w", r.repo, tag, err)
	}
	if err != nil {
		src.Close()
		return nil, nil, nil, err
	}
	return src, cfg, m.Layers, nil
}

// fetchBlob stores blob d of src in blobs unless it is there, verifying
// it against its digest (a mismatch keeps nothing and names the digest).
func (r *Remote) fetchBlob(ctx context.Context, src types.ImageSource, d ocispec.Descriptor, blobs *content.Store) error {
	if n, err := blobs.Stat(d.Digest); err == nil && n == d.Size {
		return nil
	}
	rc, _, err := src.GetBlob(ctx, types.BlobInfo{Digest: d.Digest, Size: d.Size}, none.NoCache)
	if err != nil {
		return fmt.Errorf("cache %s: blob %s: %w", r.repo, d.Digest, err)
	}
	defer rc.Close()
	if err := blobs.PutVerified(rc, d); err != nil {
		return fmt.Errorf("cache %s: blob %s: %w", r.repo, d.Digest, err)
	}
	return nil
}

// Fetch looks k up; on a hit it stores the layer blob in blobs (verified
// against its digest) and returns the record. ErrMiss when absent.
func (r *Remote) Fetch(ctx context.Context, k Key, blobs *content.Store) (Record, error) {
	src, cfg, layers, err := r.getEntry(ctx, k.Hex(), recordMediaType)
	if err != nil {
		return Record{}, err
	}
	defer src.Close()
	var rec Record
	if err := json.Unmarshal(cfg, &rec); err != nil || rec.Key != k.Hex() {
		return Record{}, ErrMiss
	}
	if (rec.Layer == nil) != (len(layers) == 0) || (rec.Layer != nil && rec.Layer.Digest != layers[0].Digest) {
		return Record{}, ErrMiss
	}
	if rec.Layer != nil {
		if err := r.fetchBlob(ctx, src, *rec.Layer, blobs); err != nil {
			return Record{}, err
		}
	}
	return rec, nil
}

// FetchMount finds the exported contents of cache mount id: a tar blob,
// stored (verified) in blobs. ErrMiss when there is none.
func (r *Remote) FetchMount(ctx context.Context, id string, blobs *content.Store) (ocispec.Descriptor, error) {
	src, cfg, layers, err := r.getEntry(ctx, mountTag(id), mountMediaType)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer src.Close()
	var c struct{ ID string }
	if json.Unmarshal(cfg, &c) != nil || c.ID != id || len(layers) != 1 {
		return ocispec.Descriptor{}, ErrMiss
	}
	if err := r.fetchBlob(ctx, src, layers[0], blobs); err != nil {
		return ocispec.Descriptor{}, err
	}
	return layers[0], nil
}

// Export stores rec under its key, with its layer blob read from open.
func (r *Remote) Export(ctx context.Context, rec Record, open func() (io.ReadCloser, error)) error {
	k, err := ParseKey(rec.Key)
	if err != nil {
		return err
	}
	rec.InStore, rec.InTree = false, false // there, the blob is in the repository
	// The named inputs are digests of single values (a build arg, an
	// environment variable): short ones could be guessed from them, so they
	// stay in the local index, for --explain-cache, and never leave it.
	rec.Inputs = nil
	cfg, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return r.putEntry(ctx, k.Hex(), recordMediaType, cfg, rec.Layer, open)
}

// ExportMount stores layer (a tar of cache mount id's contents, in blobs)
// as the mount's latest contents.
func (r *Remote) ExportMount(ctx context.Context, id string, layer ocispec.Descriptor, blobs *content.Store) error {
	cfg, err := json.Marshal(struct{ ID string }{id})
	if err != nil {
		return err
	}
	return r.putEntry(ctx, mountTag(id), mountMediaType, cfg, &layer, func() (io.ReadCloser, error) { return blobs.Open(layer.Digest) })
}

// putEntry pushes an entry: layer (if any, read from open), the config,
// then the manifest under tag.
func (r *Remote) putEntry(ctx context.Context, tag, mediaType string, cfg []byte, layer *ocispec.Descriptor, open func() (io.ReadCloser, error)) error {
	if r.layout {
		r.mu.Lock()
		defer r.mu.Unlock()
	} else if layer != nil {
		// The second entry of a blob then finds it there instead of racing
		// the first one's upload.
		m, _ := r.blobMu.LoadOrStore(layer.Digest, &sync.Mutex{})
		m.(*sync.Mutex).Lock()
		defer m.(*sync.Mutex).Unlock()
	}
	ref, err := r.ref(tag)
	if err != nil {
		return err
	}
	sys := r.sys
	if named := ref.DockerReference(); named != nil {
		sys = registry.PinnedTo(sys, reference.Domain(named))
	}
	dst, err := ref.NewImageDestination(ctx, sys)
	if err != nil {
		return fmt.Errorf("cache %s: %w", r.repo, err)
	}
	defer dst.Close()
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))},
		Layers: []ocispec.Descriptor{}}
	if layer != nil {
		m.Layers = append(m.Layers, *layer)
	}
	// A blob the repository has (another entry's, a mount's, this step's
	// other key's) is not sent again.
	if layer != nil {
		if ok, _, err := dst.TryReusingBlob(ctx, types.BlobInfo{Digest: layer.Digest, Size: layer.Size}, none.NoCache, false); err == nil && ok {
			layer = nil
		}
	}
	if layer != nil {
		f, err := open()
		if err != nil {
			return err
		}
		_, err = dst.PutBlob(ctx, f, types.BlobInfo{Digest: layer.Digest, Size: layer.Size}, none.NoCache, false)
		f.Close()
		if err != nil {
			return fmt.Errorf("cache %s: upload blob %s: %w", r.repo, layer.Digest, err)
		}
	}
	if _, err := dst.PutBlob(ctx, bytes.NewReader(cfg), types.BlobInfo{Digest: m.Config.Digest, Size: m.Config.Size}, none.NoCache, true); err != nil {
		return fmt.Errorf("cache %s: upload config: %w", r.repo, err)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := dst.PutManifest(ctx, raw, nil); err != nil {
		return fmt.Errorf("cache %s: put entry %s: %w", r.repo, tag, err)
	}
	return dst.Commit(ctx, nil)
}
