package build

// A session is the store-side state of one build: the blob store, a
// scratch directory, the base-image resolver, registry access, the layer
// cache, the RUN sandbox and snapshot driver, the compression of new
// layers. Run makes one and hands it to the executor.

import (
	"context"
	"os"
	"slices"

	"github.com/builder-dev/builder/compress"
	"github.com/builder-dev/builder/content"
	"github.com/builder-dev/builder/dockerfile"
	"github.com/builder-dev/builder/executor"
	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/internal/store"
	"github.com/builder-dev/builder/layer"
	"github.com/builder-dev/builder/snapshot"
	digest "github.com/opencontainers/go-digest"
)

type session struct {
	o        *Options
	blobs    *content.Store
	work     string // scratch dir; the executor removes it, else close does
	resolver *image.Resolver
	reg      *budRegistry
	run      *runSetup
	comp     layer.Compression
	up       *eagerUploader // nil unless --push
	cache    *budCache
	ex       *executor.Executor
}

func newSession(ctx context.Context, o *Options) (_ *session, err error) {
	s := &session{o: o}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	st := o.Store
	if s.blobs, err = st.Blobs(); err != nil {
		return nil, err
	}
	if s.work, err = snapshot.NewScratchDir(st.Dir("tmp"), "build-", o.Log); err != nil {
		return nil, err
	}
	s.resolver = &image.Resolver{Store: st.Storage(), Log: o.Log}
	if s.reg, err = setupRegistry(o, s.resolver); err != nil {
		return nil, err
	}
	if s.run, err = setupRun(o, s.work); err != nil {
		return nil, err
	}
	s.comp = layer.Compression{Kind: compress.None}
	for _, out := range o.Outputs {
		if out.Type == "oci" || out.Type == "docker-archive" || out.Type == "tar" {
			s.comp.Kind = compress.Gzip
		}
	}
	s.comp = s.reg.layerCompression(s.comp)
	if len(o.Tags) > 0 || len(o.Outputs) == 0 {
		s.comp.RawDir = s.work // the store commit reads these instead of decompressing
	}
	if s.up = s.reg.eager(ctx, o); s.up != nil && s.comp.Kind != compress.None {
		s.comp.Follow = s.up.follow
	}
	if s.cache, err = openCache(o, s.reg); err != nil {
		return nil, err
	}
	return s, nil
}

// executor makes the build's executor; close closes it.
func (s *session) executor(ignore *dockerfile.Ignore) (*executor.Executor, error) {
	o, st := s.o, s.o.Store.Storage()
	var index executor.CacheIndex
	if s.cache.index != nil {
		index = s.cache.index
	}
	ex, err := executor.New(executor.Config{
		CacheFrom: s.cache.from, CacheTo: s.cache.to, ExportMounts: o.CacheToMounts,
		StoreLayer: func(d digest.Digest) (image.Layer, error) { return store.LayerByDiffID(st, d) },
		Cache:      index, NoCache: o.NoCache, CacheTTL: o.CacheTTL, FileHashes: s.cache.hashes,
		PortableModes: o.PortableModes, ExplainCache: o.ExplainCache,
		Blobs: s.blobs, Resolver: s.resolver, WorkDir: s.work, Context: o.ContextDir,
		Ignore: ignore, Compression: s.comp, Timestamp: o.Timestamp, Out: o.Out, ErrOut: o.ErrOut, Log: o.Log,
		Snapshots: s.run.snapshots, Runner: s.run.sandbox, Network: s.run.network,
		AllowNetworkHost: slices.Contains(o.Allow, "network.host"), AllowInsecure: slices.Contains(o.Allow, "security.insecure"),
		Secrets: s.run.secrets, SecretsDir: s.run.secretsDir, CacheMounts: o.Store.Dir("cache-mounts"),
	})
	if err != nil {
		return nil, err
	}
	s.ex = ex
	return ex, nil
}

// close waits for streamed uploads and releases everything the session
// holds, the scratch dir last.
func (s *session) close() {
	if s.up != nil {
		s.up.wait()
	}
	if s.cache != nil {
		s.cache.close(s.o.Log)
	}
	if s.ex != nil {
		s.ex.Close() // removes the scratch dir
	} else if s.work != "" {
		os.RemoveAll(s.work)
	}
	if s.resolver != nil {
		s.resolver.Close()
	}
	if s.run != nil && s.run.cleanup != nil {
		s.run.cleanup()
	}
}
