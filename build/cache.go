package build

// The layer cache of a build (the local index and its lock, the context's
// file-hash index, --cache-from/--cache-to), and the cache's housekeeping:
// list, disk use, prune, hashing a context.

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/builder-dev/builder/cache"
	"github.com/builder-dev/builder/executor"
	"github.com/builder-dev/builder/images"
	"github.com/builder-dev/builder/internal/store"
	"github.com/builder-dev/builder/snapshot"
	digest "github.com/opencontainers/go-digest"
)

type budCache struct {
	held   *cache.Index // always open: its shared lock keeps prune away
	index  *cache.Index // held, or nil with NoLayers
	hashes *cache.FileHashes
	from   []*cache.Remote
	to     *cache.Remote
}

func openCache(o *Options, reg *budRegistry) (*budCache, error) {
	c := &budCache{}
	var err error
	for _, r := range o.CacheFrom {
		rem, err := cache.NewRemote(r, reg.env.Sys)
		if err != nil {
			return nil, optionf("--cache-from: %v", err)
		}
		c.from = append(c.from, rem)
	}
	if o.CacheTo != "" {
		if c.to, err = cache.NewRemote(o.CacheTo, reg.env.Sys); err != nil {
			return nil, optionf("--cache-to: %v", err)
		}
	}
	// Opened even with NoLayers, for the lock: prune must not remove
	// snapshot trees this build uses.
	if c.held, err = openIndex(o.Store); err != nil {
		return nil, err
	}
	if !o.NoLayers {
		c.index = c.held
		dir := o.Store.Dir("cache")
		key := digest.FromString(contextAbs(o.ContextDir)).Encoded()
		c.hashes = cache.LoadFileHashes(filepath.Join(dir, "filehashes", key))
	}
	return c, nil
}

func openIndex(s *images.Store) (*cache.Index, error) {
	blobs, err := s.Blobs()
	if err != nil {
		return nil, err
	}
	x, err := cache.OpenIndex(s.Dir("cache"), blobs)
	if err != nil {
		return nil, err
	}
	x.SetStoreCheck(func(d digest.Digest) bool {
		st, err := s.Opened()
		return err == nil && store.HasLayer(st, d)
	})
	return x, nil
}

// close saves the file-hash index and releases the lock.
func (c *budCache) close(log *slog.Logger) {
	if c.hashes != nil {
		if err := c.hashes.Save(); err != nil {
			log.Debug("cannot save the context file-hash index", "err", err)
		}
	}
	if c.held != nil {
		c.held.Close()
	}
}

// CacheEntry is one layer cache entry.
type CacheEntry = cache.Record

// CacheEntries lists the layer cache's entries, most recently used first.
func CacheEntries(s *images.Store) ([]CacheEntry, error) {
	x, err := openIndex(s)
	if err != nil {
		return nil, err
	}
	defer x.Close()
	return x.List()
}

// CacheUsage is the layer cache's disk use.
type CacheUsage struct {
	Entries    int
	Layers     int   // distinct layers the entries use
	LayerBytes int64 // their size
	Blobs      int   // blobs in the blob store
	BlobBytes  int64
	TreeBytes  int64 // extracted layer trees (snapshots)
}

// Usage reports the layer cache's disk use.
func Usage(s *images.Store) (CacheUsage, error) {
	recs, err := CacheEntries(s)
	if err != nil {
		return CacheUsage{}, err
	}
	u := CacheUsage{Entries: len(recs)}
	seen := map[digest.Digest]bool{}
	for _, r := range recs {
		if r.Layer != nil && !seen[r.Layer.Digest] {
			seen[r.Layer.Digest] = true
			u.LayerBytes += r.Layer.Size
		}
	}
	u.Layers = len(seen)
	blobs, err := s.Blobs()
	if err != nil {
		return u, err
	}
	if u.BlobBytes, u.Blobs, err = blobs.Size(); err != nil {
		return u, err
	}
	u.TreeBytes = snapshot.Size(s.Dir("snapshots"))
	return u, nil
}

// PruneOptions select what Prune removes.
type PruneOptions struct {
	All       bool          // every entry
	OlderThan time.Duration // entries unused for longer
	KeepBytes int64         // then the least recently used until the cache fits
}

// PruneResult says what Prune removed.
type PruneResult struct {
	Entries, Blobs, Trees int
	Bytes                 int64
}

// Prune removes cache entries, the blobs only they used and the extracted
// layer trees no kept entry uses, waiting for running builds. With no
// filter at all it removes everything, as `buildah prune` does.
func Prune(ctx context.Context, s *images.Store, o PruneOptions) (PruneResult, error) {
	blobs, err := s.Blobs()
	if err != nil {
		return PruneResult{}, err
	}
	po := cache.PruneOptions{All: o.All || (o.OlderThan == 0 && o.KeepBytes == 0), MaxAge: o.OlderThan, MaxBytes: o.KeepBytes}
	var trees snapshot.PruneResult
	po.Also = func(kept map[digest.Digest]bool) error {
		keep := func(d digest.Digest) bool { return kept[d] }
		if po.All {
			keep = nil
		}
		var err error
		trees, err = snapshot.Prune(s.Dir("snapshots"), keep)
		return err
	}
	res, err := cache.Prune(ctx, s.Dir("cache"), blobs, po)
	if err != nil {
		return PruneResult{}, err
	}
	return PruneResult{Entries: res.Entries, Blobs: res.Blobs, Trees: trees.Trees, Bytes: res.Bytes + trees.Bytes}, nil
}

// HashContext hashes dir as `COPY . /` selects it (after the
// .dockerignore that goes with dockerfilePath), reading every file: what
// hashing a context costs without the file-hash index.
func HashContext(ctx context.Context, dir, dockerfilePath string) (digest.Digest, int, error) {
	ignore, err := LoadIgnore(dockerfilePath, dir)
	if err != nil {
		return "", 0, &OptionError{Err: err}
	}
	return executor.HashContext(ctx, dir, ignore)
}
