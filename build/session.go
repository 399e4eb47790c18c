package build

// A session is the store-side state of one build: the blob store, a
// scratch directory, the base-image resolver, registry access, the layer
// cache, the RUN sandbox and snapshot driver, the compression of new
// layers. Run makes one and hands it to the executor.

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/builder-dev/builder/compress"
	"github.com/builder-dev/builder/content"
	"github.com/builder-dev/builder/dockerfile"
	"github.com/builder-dev/builder/executor"
	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/internal/lineout"
	"github.com/builder-dev/builder/internal/store"
	"github.com/builder-dev/builder/layer"
	"github.com/builder-dev/builder/platform"
	"github.com/builder-dev/builder/pushers"
	"github.com/builder-dev/builder/snapshot"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage"
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
	exs      []*executor.Executor
	outMu    sync.Mutex // lines of the platforms' outputs are written whole
	closers  []func()
	warm     chan struct{} // closed once the store's driver checks are done (warmStore)
	gate     chan struct{} // closed once the preflight is done (openGate)
	gateErr  error
	early    sync.WaitGroup                   // layers being handed to the store (stageLayers)
	earlyMu  sync.Mutex                       // one at a time
	named    map[string]executor.NamedContext // --build-context
	events   func(executor.Event)             // the progress view's
}

// openGate runs the build's preflight in the background: the RUN
// sandbox's isolation (its probe, a process in new namespaces, takes
// 10-20 ms) and then check. The stages wait for it before they resolve or
// print anything (executor.Config.Gate), so a build that cannot run fails
// before its first step, as before; meanwhile they extract base layers.
func (s *session) openGate(check func() error) {
	s.gate = make(chan struct{})
	go func() {
		defer close(s.gate)
		if s.gateErr = s.run.choose(s.o); s.gateErr == nil {
			s.gateErr = check()
		}
	}()
}

// waitGate waits for openGate's preflight and returns its error.
func (s *session) waitGate(ctx context.Context) error {
	if s.gate == nil {
		return nil
	}
	select {
	case <-s.gate:
		return s.gateErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// gateFailed is the preflight's error once it is done.
func (s *session) gateFailed() error { return s.waitGate(context.Background()) }

// onClose runs f when the session closes, before anything else is released.
func (s *session) onClose(f func()) { s.closers = append(s.closers, f) }

func newSession(ctx context.Context, o *Options) (_ *session, err error) {
	s := &session{o: o}
	if s.named, err = ParseBuildContexts(o.BuildContexts); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	st := o.Store
	if s.blobs, err = st.Blobs(); err != nil {
		return nil, err
	}
	s.warmStore()
	if s.work, err = snapshot.NewScratchDir(st.Dir("tmp"), "build-", o.Log); err != nil {
		return nil, err
	}
	s.resolver = &image.Resolver{OpenStore: st.Opened, Log: o.Log}
	// A build for this machine takes a base of another platform with a
	// warning, as docker's does; one that asked for platforms gets them.
	if s.resolver.Mismatch, err = image.ParseMismatch(o.PlatformMismatch); err != nil {
		return nil, optionf("--platform-mismatch: %w", err)
	}
	if len(o.Platforms) == 0 && !o.AllPlatforms {
		s.resolver.Mismatch = image.MismatchWarn
	}
	if s.reg, err = setupRegistry(o, s.resolver); err != nil {
		return nil, err
	}
	if s.run, err = setupRun(o, s.work); err != nil {
		return nil, err
	}
	s.comp = layer.Compression{Kind: compress.None}
	for _, out := range o.Outputs {
		if out.Type == "oci" || out.Type == "docker-archive" {
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
	if tf, ok := s.run.snapshots.(snapshot.TreeFinder); ok && s.cache.index != nil {
		s.cache.index.SetTreeCheck(func(d digest.Digest) bool {
			_, tree := tf.Tree(d)
			_, _, split := tf.Split(d)
			return tree && split
		})
	}
	return s, nil
}

// executor makes the executor of one platform of the build, writing to
// out and errOut; close closes it.
func (s *session) executor(ignore *dockerfile.Ignore, plat platform.Platform, out, errOut io.Writer, flight *executor.Flight) (*executor.Executor, error) {
	o, st := s.o, s.o.Store
	work := filepath.Join(s.work, strings.ReplaceAll(plat.String(), "/", "-"))
	var index executor.CacheIndex
	if s.cache.index != nil {
		index = s.cache.index
	}
	ex, err := executor.New(executor.Config{
		CacheFrom: s.cache.from, CacheTo: s.cache.to, CacheToMin: o.CacheToMin, ExportMounts: o.CacheToMounts,
		StoreLayer: func(d digest.Digest) (image.Layer, error) {
			cs, err := st.Opened()
			if err != nil {
				return nil, err
			}
			return store.LayerByDiffID(cs, d)
		},
		Cache: index, NoCache: o.NoCache, CacheTTL: o.CacheTTL, FileHashes: s.cache.hashes,
		PortableModes: o.PortableModes, ExplainCache: o.ExplainCache,
		Blobs: s.blobs, Resolver: s.resolver, WorkDir: work, Context: o.ContextDir,
		Ignore: ignore, Compression: s.comp, Timestamp: o.Timestamp, Out: out, ErrOut: errOut, Log: o.Log,
		Flight: flight, BinfmtDir: o.BinfmtDir, RunFailureNote: s.run.idNote,
		Snapshots: s.run.snapshots, Runner: s.run.sandbox, Network: s.run.network,
		AllowNetworkHost: slices.Contains(o.Allow, "network.host"), AllowInsecure: slices.Contains(o.Allow, "security.insecure"),
		Secrets: s.run.secrets, SSH: s.run.ssh, NamedContexts: s.named, Squash: o.Squash, Jobs: o.Jobs, Events: s.events, SecretsDir: s.run.secretsDir, CacheMounts: o.Store.Dir("cache-mounts"),
		Gate: s.waitGate, BaseAhead: s.commitsToStore() && s.trees() != nil, ImageLayers: s.stageLayers,
	})
	if err != nil {
		return nil, err
	}
	s.exs = append(s.exs, ex)
	return ex, nil
}

// prefixed writes each line written to it to w, prefixed with the
// platform, whole (the platforms of a build run at once).
func (s *session) prefixed(w io.Writer, p platform.Platform) io.Writer {
	return &lineout.Writer{Mu: &s.outMu, W: w, Prefix: "[" + p.String() + "] "}
}

// close waits for streamed uploads and releases everything the session
// holds, the scratch dir last.
func (s *session) close() {
	s.gateFailed() // its sandbox setup is released below
	s.warmed()     // not running once the store shuts down
	for _, f := range s.closers {
		f()
	}
	if s.up != nil {
		s.up.wait()
	}
	// Executors first: their cache entries are written in the background,
	// under the cache's lock.
	for _, ex := range s.exs {
		ex.Close()
	}
	s.early.Wait() // it moves the snapshot driver's trees into the store
	if s.cache != nil {
		s.cache.close(s.o.Log)
	}
	if s.work != "" {
		os.RemoveAll(s.work)
	}
	if s.resolver != nil {
		s.resolver.Close()
	}
	if s.run != nil && s.run.cleanup != nil {
		s.run.cleanup()
	}
}

// warmStore runs the overlay driver's one-time check for idmapped lower
// layers while the build runs: in a store it has not seen before, it
// starts a process in a user namespace and mounts (~8 ms), and the store
// commit's first layer would wait for it. The check's result is kept by
// the driver without a lock, so every store write waits for warmed first.
func (s *session) warmStore() {
	s.warm = make(chan struct{})
	go func() {
		defer close(s.warm)
		cs, err := s.o.Store.Opened()
		if err != nil {
			return
		}
		if d, err := cs.GraphDriver(); err == nil {
			d.SupportsShifting(nil, nil)
		}
	}()
}

// warmed waits for warmStore.
func (s *session) warmed() {
	if s.warm != nil {
		<-s.warm
	}
}

// storeReady waits for the store's open, warmStore and stageLayers, before
// the store commit.
func (s *session) storeReady() (storage.Store, error) {
	for _, ex := range s.exs {
		ex.WaitAhead() // no stageLayers starts after this
	}
	s.early.Wait()
	s.warmed()
	return s.o.Store.Opened()
}

// stageLayers hands the image's layers known so far (executor's
// ImageLayers: its base once extracted ahead, then each layer the target
// stage commits) to the local store while the build goes on, as the store
// commit would at the end (pushers.PreloadLayers; layers already there are
// skipped): the commit then finds them there. Their trees move into the
// store while stages may use them as lower layers (the snapshot driver
// keeps its lookups and mounts apart from the move). A build that fails
// later leaves them there without an image (a base's, as a pull of that
// base would; the next build of the same steps uses them). A failure here
// leaves the work to the commit.
func (s *session) stageLayers(layers []image.Layer) {
	s.early.Go(func() {
		s.earlyMu.Lock()
		defer s.earlyMu.Unlock()
		if s.gateFailed() != nil {
			return // the build ends before its first step: nothing for the store
		}
		s.warmed()
		cs, err := s.o.Store.Opened()
		t := s.trees()
		if err != nil || t == nil {
			return
		}
		if err := pushers.PreloadLayers(context.Background(), cs, layers, t); err != nil {
			s.o.Log.Debug("layers not handed to the store during the build", "err", err)
		}
	})
}
