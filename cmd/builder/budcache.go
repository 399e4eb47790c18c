package main

// The layer cache side of bud: the local index (and its lock), the
// context's file-hash index, and the --cache-from/--cache-to repositories.

import (
	"path/filepath"

	"github.com/builder-dev/builder/content"

	"github.com/builder-dev/builder/cache"
	bstore "github.com/builder-dev/builder/internal/store"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage"
)

type budCache struct {
	held   *cache.Index // always open: its shared lock keeps builder prune away
	index  *cache.Index // held, or nil with --layers=false
	hashes *cache.FileHashes
	from   []*cache.Remote
	to     *cache.Remote
}

func (o *budOptions) openCache(g *globalOptions, s storage.Store, blobs *content.Store, reg *budRegistry, contextDir string) (*budCache, error) {
	if (len(o.cacheFrom) > 0 || o.cacheTo != "") && !o.layers {
		return nil, usagef("--cache-from and --cache-to need the layer cache (not --layers=false)")
	}
	c := &budCache{}
	var err error
	for _, r := range o.cacheFrom {
		rem, err := cache.NewRemote(r, reg.env.sys)
		if err != nil {
			return nil, usagef("--cache-from: %v", err)
		}
		c.from = append(c.from, rem)
	}
	if o.cacheTo != "" {
		if c.to, err = cache.NewRemote(o.cacheTo, reg.env.sys); err != nil {
			return nil, usagef("--cache-to: %v", err)
		}
	}
	// Opened even with --layers=false, for the lock: builder prune must not
	// remove snapshot trees this build uses.
	dir := filepath.Join(s.GraphRoot(), "builder", "cache")
	if c.held, err = cache.OpenIndex(dir, blobs); err != nil {
		return nil, err
	}
	c.held.SetStoreCheck(func(d digest.Digest) bool { return bstore.HasLayer(s, d) })
	if o.layers {
		c.index = c.held
		c.hashes = cache.LoadFileHashes(filepath.Join(dir, "filehashes", digestOf([]byte(contextAbs(contextDir))).Encoded()))
	}
	return c, nil
}

// close saves the file-hash index and releases the lock.
func (c *budCache) close(g *globalOptions) {
	if c.hashes != nil {
		if err := c.hashes.Save(); err != nil {
			g.log.Debug("cannot save the context file-hash index", "err", err)
		}
	}
	c.held.Close()
}
