// Package executor runs a dockerfile.Plan: it resolves bases, lowers each
// stage, applies config changes, writes COPY/ADD/WORKDIR layers and
// assembles the resulting image.
package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/builder-dev/builder/content"
	"github.com/builder-dev/builder/platform"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/builder-dev/builder/cache"
	"github.com/builder-dev/builder/dockerfile"
	"github.com/builder-dev/builder/executor/sandbox"
	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/layer"
	"github.com/builder-dev/builder/snapshot"
)

// Resolver finds a base image (FROM, COPY --from=IMAGE) for a platform.
type Resolver interface {
	Resolve(ctx context.Context, ref string, p platform.Platform) (*image.Image, error)
}

// Runner runs one RUN step described as a runtime-spec bundle: the
// sandbox (sandbox.Sandbox), or a fake in tests.
type Runner interface {
	// Spec describes the step; Run runs it and reports its exit.
	Spec(o sandbox.SpecOptions) (*specs.Spec, error)
	Run(ctx context.Context, spec *specs.Spec, stdin io.Reader, stdout, stderr io.Writer) error
}

// CacheIndex is the local layer cache: step key → record (cache.Index).
type CacheIndex interface {
	Get(k cache.Key, ttl time.Duration) (cache.Record, error)
	Put(r cache.Record) error
	PutFiles(k cache.Key, files map[string]digest.Digest) error
	Files(k cache.Key) map[string]digest.Digest
	Children(parent cache.Key) []cache.Record
	List() ([]cache.Record, error)
}

// Config holds an executor's collaborators and settings.
type Config struct {
	Blobs    *content.Store // where new layer blobs go (required)
	Resolver Resolver       // FROM resolution (required)
	// WorkDir is scratch space for stage root filesystems; it must be on a
	// filesystem that supports ownership and xattrs (required).
	WorkDir string
	// Context is the build context directory (required, may be empty dir).
	Context string
	// Ignore holds the .dockerignore patterns (nil: nothing ignored).
	Ignore *dockerfile.Ignore
	// Snapshots materializes stage file trees (required).
	Snapshots snapshot.Driver
	// Runner runs RUN steps (the sandbox); nil makes RUN an error.
	Runner Runner
	// Network is the default RUN network: "private" (own namespace with
	// user-mode networking), "host" or "none".
	Network string
	// AllowNetworkHost and AllowInsecure are the user's entitlements
	// (--allow network.host, --allow security.insecure): without them a
	// Dockerfile's RUN --network=host or --security=insecure fails, since
	// a Dockerfile alone may not widen what a build reaches.
	AllowNetworkHost, AllowInsecure bool
	// Secrets are the --secret values by id.
	Secrets map[string]Secret
	// SSH are the --ssh agent sockets by id (RUN --mount=type=ssh).
	SSH map[string]string
	// Squash merges the layers the target stage added above its base image
	// into one (--squash).
	Squash bool
	// NamedContexts are --build-context values by name: FROM name, COPY
	// --from=name and RUN --mount from=name read them instead of an image
	// of that name (a stage of that name still wins).
	NamedContexts map[string]NamedContext
	// CacheMounts is where RUN --mount=type=cache directories persist.
	CacheMounts string
	// MaxLayerSize stops extracting a layer (or an ADD archive) whose tar
	// passes this many bytes: a gzip bomb fails fast (0: no limit).
	MaxLayerSize int64
	// SecretsDir is where secret files of RUN --mount=type=secret are
	// written for the RUN: a tmpfs, so they never reach a disk. "" refuses
	// secret files (environment secrets still work).
	SecretsDir string
	// Compression of new layer blobs.
	Compression layer.Compression
	// Timestamp, when set, is the created time of the image and history and
	// the upper bound of every mtime in new layers (--timestamp,
	// SOURCE_DATE_EPOCH), making digests reproducible.
	Timestamp *time.Time
	// Out receives progress lines (STEP n/N: ...) and RUN output; nil
	// discards them.
	Out io.Writer
	// ErrOut receives the last output lines of a failing RUN when Out
	// discards output (--quiet).
	ErrOut io.Writer
	// Cache is the layer cache index; nil disables the cache (--layers=false).
	Cache CacheIndex
	// NoCache skips lookups but still records entries (--no-cache).
	NoCache bool
	// CacheFrom are registry caches looked in after a local miss;
	// CacheTo receives every entry of this build (--cache-from, --cache-to).
	CacheFrom []*cache.Remote
	CacheTo   *cache.Remote
	// CacheToMin exports only the target stage's entries (mode=min).
	CacheToMin bool
	// ExportMounts sends the RUN cache mounts this build used to CacheTo as
	// well (their contents may be private: only when the user asks).
	ExportMounts bool
	// StoreLayer returns the local store's layer with this diff ID (cache
	// entries of builds that kept no blob of their own); nil: none.
	StoreLayer func(diffID digest.Digest) (image.Layer, error)
	// CacheTTL ignores entries older than this (0: no limit).
	CacheTTL time.Duration
	// FileHashes reuses context file digests across builds (nil: hash all).
	FileHashes *cache.FileHashes
	// PortableModes gives context files git's modes (0644/0755).
	PortableModes bool
	// ExplainCache prints, for each miss, the input that differs from the
	// nearest cached entry.
	ExplainCache bool
	// Flight, shared by the executors of one multi-platform build, runs a
	// step whose key is the same for several platforms once (flight.go).
	Flight *Flight
	// RunFailureNote is added to a failing RUN's error: what this
	// environment takes from RUN steps that could explain the failure (a
	// single-id mapping: chown to other ids fails with EINVAL).
	RunFailureNote string
	// BinfmtDir is where the emulation preflight reads binfmt_misc
	// handlers before a RUN for a foreign architecture ("": the kernel's).
	BinfmtDir string
	// Jobs bounds the stages of a Build that run at once: stages that do
	// not depend on each other run concurrently, as in BuildKit (0: the
	// number of CPUs; 1: one after the other, in the plan's order).
	Jobs int
	// Events, when set, receives each step's start and end (the live and
	// JSON progress views); the text on Out is unchanged.
	Events func(Event)
	// HTTP fetches ADD URLs; nil uses http.DefaultClient.
	HTTP *http.Client
	Log  *slog.Logger
	// Gate, when set, is waited for before a stage resolves its FROM and
	// prints or runs anything (the build's preflight: the RUN sandbox's
	// probe); its error ends the build. Meanwhile a stage whose base is the
	// target's and is read from this machine has that base's layers
	// extracted, when BaseAhead says the build needs them as trees anyway
	// (a commit to the local store takes them).
	Gate      func(context.Context) error
	BaseAhead bool
	// ImageLayers, when set with BaseAhead, is told the built image's
	// layers known so far, bottom first (trees: the target's base extracted
	// ahead, the layers the target stage committed; not with Squash, whose
	// image has other layers), at moments when every stage running is
	// inside a RUN's process (handover), so the store commit can take them
	// in while the build goes on. It must not block.
	ImageLayers func(layers []image.Layer)
}

// Event is a step's start or end, for progress views.
type Event struct {
	Type     string        `json:"type"` // step-start, step-end
	Platform string        `json:"platform,omitempty"`
	Stage    int           `json:"stage"` // 1-based, of Stages
	Stages   int           `json:"stages"`
	Step     int           `json:"step"` // 1-based, of Steps in the stage
	Steps    int           `json:"steps"`
	Text     string        `json:"text"`
	Cached   bool          `json:"cached,omitempty"`
	Duration time.Duration `json:"duration_ns,omitempty"`
	Error    string        `json:"error,omitempty"`
}

func (e *Executor) emit(ev Event, typ string) {
	if e.cfg.Events != nil {
		ev.Type = typ
		e.cfg.Events(ev)
	}
}

// Steps says how many cacheable steps the last Build ran or took from the
// cache, and how many of them it took from the cache.
func (e *Executor) Steps() (steps, cached int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.times), e.hits()
}

// addTime records a step's outcome; a miss marks the build as not all
// cached.
func (e *Executor) addTime(t stepTime) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.times = append(e.times, t)
	if !t.cached {
		e.missed = true
	}
}

// hits counts the cached steps of the build so far (mu held).
func (e *Executor) hits() int {
	n := 0
	for _, t := range e.times {
		if t.cached {
			n++
		}
	}
	return n
}

// NamedContext is one --build-context: a directory, or an image reference.
type NamedContext struct {
	Dir   string
	Image string
}

// Executor runs plans. It is not safe for concurrent Builds; the stages of
// one Build may run concurrently (Config.Jobs), so the build's state below
// is guarded by mu, except what is set before the stages start (platform,
// plan, probed) and what one goroutine owns (exports, through exportMu).
type Executor struct {
	cfg       Config
	ctxRoot   *os.Root
	chownOK   bool // lchown to arbitrary ids works (root or a mapped range)
	quiet     bool // no step output (-q): a failed RUN's output goes to ErrOut
	mu        sync.Mutex
	mountMu   sync.Mutex // one cache mount created (imported, seeded) at a time
	warnedIDs bool
	platform  platform.Platform // of the build in progress
	plan      *dockerfile.Plan  // of the build in progress
	times     []stepTime        // cached or run steps, for the summary line
	exports   sync.WaitGroup    // --cache-to uploads in flight
	records   sync.WaitGroup    // local cache entries being written
	ahead     sync.WaitGroup    // base layers extracted at the gate
	aheadBase resolved          // the target stage's base image (Gate, BaseAhead)
	hand      *handover         // ImageLayers' calls, in this Build
	exportMu  sync.Mutex
	exportErr []error
	// mountsUsed are the cache mounts (id → dir) RUN steps used, exported
	// with --cache-to at the end of the build.
	mountsUsed map[string]string
	hashMemo   map[string]hashResult    // context selections hashed in this build
	started    time.Time                // the build's creation time (no --timestamp)
	missed     bool                     // a cacheable step ran in this build
	probed     map[cache.Key]bool       // keys the up-front probe looked up in --cache-from
	resolved   map[resolved]*resolution // images resolved (or being resolved) in this build
	emulation  map[platform.Platform]error
	namedRoots map[string]*os.Root // --build-context directories opened
	gitCommits map[string]string   // ADD git sources resolved to commits in this build
}

// New validates cfg and returns an Executor.
func New(cfg Config) (*Executor, error) {
	switch {
	case cfg.Blobs == nil:
		return nil, errors.New("executor: no blob store")
	case cfg.Resolver == nil:
		return nil, errors.New("executor: no image resolver")
	case cfg.WorkDir == "":
		return nil, errors.New("executor: no work dir")
	case cfg.Context == "":
		return nil, errors.New("executor: no build context")
	case cfg.Snapshots == nil:
		return nil, errors.New("executor: no snapshot driver")
	}
	if cfg.Network == "" {
		cfg.Network = sandbox.NetworkPrivate
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	quiet := cfg.Out == io.Discard
	// Stages running at once write whole lines each; one at a time.
	cfg.Out = &lockedWriter{w: cfg.Out}
	if ev := cfg.Events; ev != nil {
		var mu sync.Mutex
		cfg.Events = func(e Event) { mu.Lock(); defer mu.Unlock(); ev(e) }
	}
	if cfg.HTTP == nil {
		cfg.HTTP = http.DefaultClient
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o700); err != nil {
		return nil, fmt.Errorf("executor: %w", err)
	}
	root, err := os.OpenRoot(cfg.Context)
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	e := &Executor{cfg: cfg, ctxRoot: root, mountsUsed: map[string]string{}, quiet: quiet}
	e.chownOK = probeChown(cfg.WorkDir)
	return e, nil
}

// Close releases the executor's scratch space.
func (e *Executor) Close() error {
	e.records.Wait()
	e.ahead.Wait()
	e.ctxRoot.Close()
	for _, r := range e.namedRoots {
		r.Close()
	}
	return os.RemoveAll(e.cfg.WorkDir)
}

// WaitAhead waits for the base layers extracted ahead at the gate (and
// Config.ImageLayers' calls).
func (e *Executor) WaitAhead() { e.ahead.Wait() }

// Build runs every stage of p (dependency order) for platform and returns
// the target stage's image.
func (e *Executor) Build(ctx context.Context, p *dockerfile.Plan, plat platform.Platform) (*image.Image, error) {
	e.records.Wait() // an earlier Build's entries, for this one's lookups
	e.platform, e.plan = plat, p
	e.started, e.missed, e.probed, e.resolved = time.Time{}, false, nil, nil
	e.aheadBase, e.hand = targetBase(p, plat), nil
	if e.cfg.ImageLayers != nil && e.cfg.BaseAhead && !e.cfg.Squash {
		e.hand = &handover{tell: e.cfg.ImageLayers}
	}
	e.prefetch(ctx, p, plat)
	if len(p.Stages) == 0 {
		return nil, errors.New("empty plan")
	}
	var last *stageState
	var err error
	if jobs := e.jobs(); jobs > 1 && len(p.Stages) > 1 {
		last, err = e.runConcurrently(ctx, p, plat, jobs)
	} else {
		last, err = e.runInOrder(ctx, p, plat)
	}
	if err != nil {
		return nil, err
	}
	if line := e.cacheSummary(); line != "" {
		e.stepf("%s", line)
	}
	e.exportMounts(ctx)
	if e.cfg.Squash {
		if err := e.squash(ctx, last); err != nil {
			return nil, fmt.Errorf("--squash: %w", err)
		}
	}
	img := last.img
	e.reuseCreated(&img, last.key)
	return &img, nil
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// warnOnce says whether this is the build's first ownership warning.
func (e *Executor) warnOnce() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	first := !e.warnedIDs
	e.warnedIDs = true
	return first
}

func (e *Executor) jobs() int {
	if e.cfg.Jobs > 0 {
		return e.cfg.Jobs
	}
	return runtime.NumCPU()
}

// runInOrder runs the stages one after the other; it returns the last.
func (e *Executor) runInOrder(ctx context.Context, p *dockerfile.Plan, plat platform.Platform) (*stageState, error) {
	done := map[int]*stageState{}
	var last *stageState
	for i, st := range p.Stages {
		s, err := e.runStage(ctx, p, st, done, plat, stageRun{n: i, total: len(p.Stages), final: i == len(p.Stages)-1})
		if err != nil {
			return nil, err
		}
		done[st.Index] = s
		last = s
	}
	return last, nil
}

// runConcurrently runs each stage as soon as the stages it reads are
// built, at most jobs at once. What a stage makes depends only on its
// inputs, so the image is the one runInOrder makes. The first failure
// cancels the rest and is the one returned.
func (e *Executor) runConcurrently(ctx context.Context, p *dockerfile.Plan, plat platform.Platform, jobs int) (*stageState, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	total := len(p.Stages)
	var (
		mu       sync.Mutex
		built    = map[int]*stageState{}
		firstErr error
	)
	finished := make(map[int]chan struct{}, total)
	for _, st := range p.Stages {
		finished[st.Index] = make(chan struct{})
	}
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	for i, st := range p.Stages {
		wg.Go(func() {
			defer close(finished[st.Index])
			for _, d := range st.Deps {
				ch, ok := finished[d]
				if !ok {
					continue // pruned from the plan: the stage reports it
				}
				select {
				case <-ch:
				case <-ctx.Done():
					return
				}
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			// The stage reads the stages it depends on, all built by now;
			// it gets its own map, as others are added concurrently.
			mu.Lock()
			done := make(map[int]*stageState, len(built))
			for k, v := range built {
				done[k] = v
			}
			mu.Unlock()
			if ctx.Err() != nil {
				return
			}
			s, err := e.runStage(ctx, p, st, done, plat, stageRun{n: i, total: total, final: i == total-1, tag: true})
			if err != nil {
				fail(err)
				return
			}
			mu.Lock()
			built[st.Index] = s
			mu.Unlock()
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return built[p.Stages[total-1].Index], nil
}

// WaitExports waits for the --cache-to uploads still running (the image is
// built and written by then: exports never hold it back), at most for
// limit; failures and a timeout are warnings, never errors.
func (e *Executor) WaitExports(limit time.Duration) {
	done := make(chan struct{})
	go func() { e.exports.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(limit):
		e.cfg.Log.Warn("cache export still running; leaving it unfinished", "after", limit)
		return
	}
	e.exportMu.Lock()
	defer e.exportMu.Unlock()
	for _, err := range e.exportErr {
		e.cfg.Log.Warn("cache export failed", "err", err)
	}
}

// ExportRootfs writes the target image's file tree to dest (type=local).
func (e *Executor) ExportRootfs(ctx context.Context, img *image.Image, dest string) error {
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	for _, l := range img.Layers {
		rc, err := layer.UncompressedLimit(ctx, l, e.cfg.MaxLayerSize)
		if err != nil {
			return err
		}
		// The host gets files, never devices, setuid bits or file
		// capabilities from an image, whoever runs the build.
		_, err = snapshot.Apply(ctx, dest, rc, snapshot.ApplyOptions{
			ForHost: true, NoChown: !e.chownOK, IgnoreChownErrors: true, IgnoreXattrErrors: true,
		})
		rc.Close()
		if err != nil {
			return fmt.Errorf("extract layer %s: %w", l.Descriptor().Digest, err)
		}
	}
	return nil
}

// now is the build's one creation time: --timestamp, or the moment Build
// started (every history entry of a build shares it, so a rebuild that hit
// the cache throughout can take the first build's time and its image ID).
func (e *Executor) now() time.Time {
	if e.cfg.Timestamp != nil {
		return e.cfg.Timestamp.UTC()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started.IsZero() {
		e.started = time.Now().UTC().Truncate(time.Second)
	}
	return e.started
}

// copyTime is the mtime of what COPY and ADD create from the context,
// inline files and new parent directories: --timestamp when given, else
// the Unix epoch. Never the context's own mtimes or the build time, so a
// layer depends only on what its cache key covers: touching a file changes
// neither, and a cache hit gives the layer a fresh build would.
func (e *Executor) copyTime() time.Time {
	if e.cfg.Timestamp != nil {
		return e.cfg.Timestamp.UTC()
	}
	return time.Unix(0, 0).UTC()
}

func (e *Executor) stepf(format string, a ...any) {
	fmt.Fprintf(e.cfg.Out, format+"\n", a...)
}

// stepErr attaches the step's Dockerfile position to err once.
func stepErr(s dockerfile.Step, err error) error {
	var de *dockerfile.Error
	if errors.As(err, &de) {
		return err
	}
	return &dockerfile.Error{Pos: s.Pos(), Err: fmt.Errorf("%s: %w", firstWord(s.String()), err)}
}

func firstWord(s string) string {
	if i := strings.IndexByte(s, ' '); i > 0 {
		return s[:i]
	}
	return s
}

func (e *Executor) tempDir(prefix string) (string, error) {
	return os.MkdirTemp(e.cfg.WorkDir, prefix)
}
