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

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"
)

const recordMediaType = "application/vnd.builder.cache.record.v1+json"

// Remote is a cache repository in a registry (--cache-to, --cache-from).
type Remote struct {
	repo string // registry/name, no tag
	sys  *types.SystemContext
}

// NewRemote returns the cache in repository repo ("registry/name", with or
// without docker://), reached with sys (auth, TLS, registries.conf).
func NewRemote(repo string, sys *types.SystemContext) (*Remote, error) {
	repo = strings.TrimPrefix(repo, "docker://")
	if repo == "" || strings.ContainsAny(repo, "@") || strings.Contains(repo[strings.LastIndex(repo, "/")+1:], ":") {
		return nil, fmt.Errorf("cache repository %q: want REGISTRY/NAME without a tag or digest", repo)
	}
	if _, err := docker.ParseReference("//" + repo + ":probe"); err != nil {
		return nil, fmt.Errorf("cache repository %q: %w", repo, err)
	}
	return &Remote{repo: repo, sys: sys}, nil
}

func (r *Remote) String() string { return r.repo }

func (r *Remote) ref(k Key) (types.ImageReference, error) {
	return docker.ParseReference("//" + r.repo + ":" + k.Hex())
}

// Fetch looks k up; on a hit it stores the layer blob in blobs (verified
// against its digest) and returns the record. ErrMiss when absent.
func (r *Remote) Fetch(ctx context.Context, k Key, blobs *Blobs) (Record, error) {
	ref, err := r.ref(k)
	if err != nil {
		return Record{}, err
	}
	src, err := ref.NewImageSource(ctx, r.sys)
	if err != nil {
		return Record{}, fmt.Errorf("cache %s: %w", r.repo, err)
	}
	defer src.Close()
	raw, _, err := src.GetManifest(ctx, nil)
	if err != nil {
		return Record{}, ErrMiss // unknown tag (the registry's 404), or unreadable: a miss either way
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil || m.Config.MediaType != recordMediaType || len(m.Layers) > 1 {
		return Record{}, ErrMiss
	}
	rc, _, err := src.GetBlob(ctx, types.BlobInfo{Digest: m.Config.Digest, Size: m.Config.Size}, none.NoCache)
	if err != nil {
		return Record{}, fmt.Errorf("cache %s: entry %s: %w", r.repo, k.Short(), err)
	}
	cfg, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	rc.Close()
	if err != nil {
		return Record{}, err
	}
	if digest.FromBytes(cfg) != m.Config.Digest {
		return Record{}, fmt.Errorf("cache %s: entry %s: record does not match its digest %s", r.repo, k.Short(), m.Config.Digest)
	}
	var rec Record
	if err := json.Unmarshal(cfg, &rec); err != nil || rec.Key != k.Hex() {
		return Record{}, ErrMiss
	}
	if (rec.Layer == nil) != (len(m.Layers) == 0) || (rec.Layer != nil && rec.Layer.Digest != m.Layers[0].Digest) {
		return Record{}, ErrMiss
	}
	if rec.Layer != nil {
		if n, err := blobs.Stat(rec.Layer.Digest); err != nil || n != rec.Layer.Size {
			rc, _, err := src.GetBlob(ctx, types.BlobInfo{Digest: rec.Layer.Digest, Size: rec.Layer.Size}, none.NoCache)
			if err != nil {
				return Record{}, fmt.Errorf("cache %s: layer %s: %w", r.repo, rec.Layer.Digest, err)
			}
			_, _, err = blobs.Put(rc, rec.Layer.Digest) // verified: a mismatch is an error, nothing is kept
			rc.Close()
			if err != nil {
				return Record{}, fmt.Errorf("cache %s: layer %s: %w", r.repo, rec.Layer.Digest, err)
			}
		}
	}
	return rec, nil
}

// Export stores rec (and its layer blob from blobs) under its key.
func (r *Remote) Export(ctx context.Context, rec Record, blobs *Blobs) error {
	k, err := ParseKey(rec.Key)
	if err != nil {
		return err
	}
	ref, err := r.ref(k)
	if err != nil {
		return err
	}
	dst, err := ref.NewImageDestination(ctx, r.sys)
	if err != nil {
		return fmt.Errorf("cache %s: %w", r.repo, err)
	}
	defer dst.Close()
	rec.LastUsed = rec.Created
	cfg, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{MediaType: recordMediaType, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))},
		Layers: []ocispec.Descriptor{}}
	if rec.Layer != nil {
		f, err := blobs.Open(rec.Layer.Digest)
		if err != nil {
			return err
		}
		_, err = dst.PutBlob(ctx, f, types.BlobInfo{Digest: rec.Layer.Digest, Size: rec.Layer.Size}, none.NoCache, false)
		f.Close()
		if err != nil {
			return fmt.Errorf("cache %s: upload layer %s: %w", r.repo, rec.Layer.Digest, err)
		}
		m.Layers = append(m.Layers, *rec.Layer)
	}
	if _, err := dst.PutBlob(ctx, bytes.NewReader(cfg), types.BlobInfo{Digest: m.Config.Digest, Size: m.Config.Size}, none.NoCache, true); err != nil {
		return fmt.Errorf("cache %s: upload record: %w", r.repo, err)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := dst.PutManifest(ctx, raw, nil); err != nil {
		return fmt.Errorf("cache %s: put entry %s: %w", r.repo, k.Short(), err)
	}
	return dst.Commit(ctx, nil)
}

