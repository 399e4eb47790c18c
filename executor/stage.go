package executor

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/builder-dev/builder/cache"
	"github.com/builder-dev/builder/compress"
	"github.com/builder-dev/builder/dockerfile"
	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/layer"
	"github.com/builder-dev/builder/platform"
	"github.com/builder-dev/builder/snapshot"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// stageState is a stage's image so far. Its file tree exists only as
// layers; a snapshot driver materializes it when a step needs files.
type stageState struct {
	img      image.Image
	key      cache.Key // cache key of the state so far (zero: not cacheable)
	base     cache.Key // key of the stage's FROM: content keys are scoped by it
	baseRef  string    // the FROM image as written, and its identity (for --explain-cache)
	baseID   digest.Digest
	platform platform.Platform
	// baseLayers and baseHistory are how many layers and history entries
	// the image at the bottom of the stage's FROM chain has (--squash
	// keeps them and squashes the rest).
	baseLayers, baseHistory int
	// final is set for the target stage (its layers go to the store
	// commit; --cache-to mode=min exports only its steps).
	final bool
	// reuse is the earlier layer of the step running now, set by
	// cachedStep on a miss (see reuse.go).
	reuse *reuse
	// tag leads the stage's own lines ("--> Using cache") when stages run
	// concurrently; "" otherwise.
	tag string
}

// stageRun says where a stage stands in the build.
type stageRun struct {
	n, total int  // 0-based position and count, for "[n/total]"
	final    bool // the target stage
	tag      bool // stages run concurrently: every line says its stage
}

func (e *Executor) runStage(ctx context.Context, p *dockerfile.Plan, st *dockerfile.Stage, done map[int]*stageState, plat platform.Platform, r stageRun) (*stageState, error) {
	if !st.Platform.IsZero() {
		plat = st.Platform
	}
	e.hand.stage(1)
	defer e.hand.stage(-1)
	if e.cfg.Gate != nil {
		e.extractAhead(ctx, st, plat)
		if err := e.cfg.Gate(ctx); err != nil {
			return nil, err
		}
	}
	s, err := e.baseState(ctx, st, done, plat)
	if err != nil {
		return nil, err
	}
	n, total := r.n, r.total
	s.final = r.final
	if r.tag {
		s.tag = fmt.Sprintf("[%d/%d] ", n+1, total)
	}
	steps, err := p.Lower(st, s.img.Config.Config)
	if err != nil {
		return nil, err
	}
	name := st.Base.Image
	if st.Base.Stage >= 0 {
		name = stageName(p, st.Base.Stage)
	}
	shown := stepsShown(steps)
	e.stepf("[%d/%d] STEP 1/%d: FROM %s%s", n+1, total, len(steps)+shown, name, asName(st.Name))
	from := Event{Platform: plat.String(), Stage: n + 1, Stages: total, Step: 1, Steps: len(steps) + shown, Text: "FROM " + name + asName(st.Name)}
	e.emit(from, "step-start")
	e.emit(from, "step-end")
	// A new image starts with no pending base triggers: Lower ran them.
	s.img.Config.Config.OnBuild = nil
	for i, step := range steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if m, ok := step.(*dockerfile.Meta); ok && m.NoHistory && strings.HasPrefix(m.Text, "FROM ") {
			if err := e.runStep(ctx, s, step, done, ""); err != nil {
				return nil, stepErr(step, err)
			}
			continue
		}
		e.stepf("[%d/%d] STEP %d/%d: %s", n+1, total, i+1+shown, len(steps)+shown, step.String())
		ev := Event{Platform: plat.String(), Stage: n + 1, Stages: total, Step: i + 1 + shown, Steps: len(steps) + shown, Text: step.String()}
		e.emit(ev, "step-start")
		start := time.Now()
		cached, err := e.cachedStep(ctx, s, step, done, fmt.Sprintf("[%d/%d] | ", n+1, total))
		ev.Duration, ev.Cached = time.Since(start), cached
		if err != nil {
			err = stepErr(step, err)
			ev.Error = err.Error()
		}
		e.emit(ev, "step-end")
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

func asName(n string) string {
	if n == "" {
		return ""
	}
	return " AS " + n
}

func stageName(p *dockerfile.Plan, idx int) string {
	for _, s := range p.Stages {
		if s.Index == idx && s.Name != "" {
			return s.Name
		}
	}
	return fmt.Sprint(idx)
}

// targetBase is the image the target stage of p stands on (through FROM
// <stage>), none when it stands on scratch.
func targetBase(p *dockerfile.Plan, plat platform.Platform) resolved {
	byIndex := map[int]*dockerfile.Stage{}
	for _, st := range p.Stages {
		byIndex[st.Index] = st
	}
	for i := len(p.Stages) - 1; i >= 0; {
		st := p.Stages[i]
		if !st.Platform.IsZero() {
			plat = st.Platform
		}
		if st.Base.Stage < 0 {
			if strings.EqualFold(st.Base.Image, "scratch") {
				return resolved{}
			}
			return resolved{st.Base.Image, plat}
		}
		parent, ok := byIndex[st.Base.Stage]
		if !ok {
			return resolved{}
		}
		i = slices.Index(p.Stages, parent)
	}
	return resolved{}
}

// extractAhead starts extracting the layers of st's base image while the
// stage waits at the gate, when the build needs them as trees anyway
// (BaseAhead: the target's base, bound for the local store) and they are
// read from this machine: nothing is pulled and nothing printed. The
// stage's steps find the layers extracted, or wait for the extraction;
// its errors are theirs to report.
func (e *Executor) extractAhead(ctx context.Context, st *dockerfile.Stage, plat platform.Platform) {
	x, ok := e.cfg.Snapshots.(snapshot.Extractor)
	if !ok || !e.cfg.BaseAhead || st.Base.Stage >= 0 || e.aheadBase != (resolved{st.Base.Image, plat}) {
		return
	}
	ref := st.Base.Image
	if nc, ok := e.cfg.NamedContexts[ref]; ok {
		ref = nc.Image // "" for a directory: not an image
	}
	if !image.Offline(ref) {
		return
	}
	hand := e.hand // this Build's
	e.ahead.Go(func() {
		img, err := e.resolve(ctx, st.Base.Image, plat)
		if err == nil && x.Extract(ctx, e.snapLayers(img.Layers)) == nil {
			hand.known(img.Layers)
		}
	})
}

// baseState resolves FROM into a fresh stage state.
func (e *Executor) baseState(ctx context.Context, st *dockerfile.Stage, done map[int]*stageState, plat platform.Platform) (*stageState, error) {
	s := &stageState{}
	switch {
	case st.Base.Stage >= 0:
		parent, ok := done[st.Base.Stage]
		if !ok {
			return nil, &dockerfile.Error{Pos: st.At, Err: fmt.Errorf("FROM: stage %d has not been built", st.Base.Stage)}
		}
		s.img = cloneImage(parent.img)
		s.key, s.base = parent.key, parent.base
		s.baseLayers, s.baseHistory = parent.baseLayers, parent.baseHistory
	case strings.EqualFold(st.Base.Image, "scratch"):
		s.img = image.Image{Config: dockerspec.DockerOCIImage{Image: ocispec.Image{
			Platform: plat.OCI(),
			RootFS:   ocispec.RootFS{Type: "layers"},
		}}}
		s.key = e.rootKey(&s.img, "scratch", plat)
		s.base = s.key
	default:
		img, err := e.resolve(ctx, st.Base.Image, plat)
		if err != nil {
			return nil, &dockerfile.Error{Pos: st.At, Err: fmt.Errorf("FROM %s: %w", st.Base.Image, err)}
		}
		s.img = cloneImage(*img)
		s.key = e.rootKey(img, st.Base.Image, plat)
		s.base = s.key
		s.baseRef, s.baseID = st.Base.Image, img.ManifestDigest
		s.baseLayers, s.baseHistory = len(img.Layers), len(img.Config.History)
		e.noteBase(s)
	}
	if s.img.Config.RootFS.Type == "" {
		s.img.Config.RootFS.Type = "layers"
	}
	// The built image is new: its identity is not the base's.
	s.img.ManifestDigest = ""
	s.platform = plat
	return s, nil
}

// cloneImage copies the slices and maps a stage mutates, so a stage never
// changes the image of the stage it was built FROM.
func cloneImage(img image.Image) image.Image {
	c := img
	c.Layers = append([]image.Layer(nil), img.Layers...)
	c.Config.RootFS.DiffIDs = append([]digest.Digest(nil), img.Config.RootFS.DiffIDs...)
	c.Config.History = append([]ocispec.History(nil), img.Config.History...)
	cc := &c.Config.Config
	cc.Env = append([]string(nil), cc.Env...)
	cc.Cmd = append([]string(nil), cc.Cmd...)[:len(cc.Cmd):len(cc.Cmd)]
	cc.Entrypoint = append([]string(nil), cc.Entrypoint...)
	cc.OnBuild = append([]string(nil), cc.OnBuild...)
	cc.Shell = append([]string(nil), cc.Shell...)
	if img.Config.Config.Cmd == nil {
		cc.Cmd = nil
	}
	if img.Config.Config.Entrypoint == nil {
		cc.Entrypoint = nil
	}
	cc.Labels = cloneMap(cc.Labels)
	cc.ExposedPorts = cloneMap(cc.ExposedPorts)
	cc.Volumes = cloneMap(cc.Volumes)
	return c
}

func cloneMap[V any](m map[string]V) map[string]V {
	if m == nil {
		return nil
	}
	c := make(map[string]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func (e *Executor) runStep(ctx context.Context, s *stageState, step dockerfile.Step, done map[int]*stageState, prefix string) error {
	switch st := step.(type) {
	case *dockerfile.Meta:
		return e.runMeta(ctx, s, st)
	case *dockerfile.Copy:
		return e.runCopy(ctx, s, st, done)
	case *dockerfile.Exec:
		return e.runExec(ctx, s, st, done, prefix)
	default:
		return fmt.Errorf("internal error: unknown step type %T", step)
	}
}

func (e *Executor) runMeta(ctx context.Context, s *stageState, m *dockerfile.Meta) error {
	applyMeta(s, m)
	if m.Author != "" {
		s.img.Config.Author = m.Author
	}
	if m.Mkdir != "" {
		made, err := e.workdir(ctx, s, m)
		if err != nil || made {
			return err
		}
	}
	if !m.NoHistory {
		s.addHistory(e, m.String(), nil)
	}
	return nil
}

// addHistory records a step; l == nil marks an empty layer.
func (s *stageState) addHistory(e *Executor, createdBy string, l image.Layer) {
	t := e.now()
	h := ocispec.History{Created: &t, CreatedBy: createdBy, EmptyLayer: l == nil}
	if s.img.Config.Author != "" {
		h.Author = s.img.Config.Author
	}
	s.img.Config.History = append(s.img.Config.History, h)
	s.img.Config.Created = &t
	if l != nil {
		s.img.Layers = append(s.img.Layers, l)
		s.img.Config.RootFS.DiffIDs = append(s.img.Config.RootFS.DiffIDs, l.DiffID())
	}
}

// snapLayers describes img's layers to the snapshot driver, which opens
// (and decompresses) a layer only if it has not extracted it before.
func (e *Executor) snapLayers(layers []image.Layer) []snapshot.Layer {
	out := make([]snapshot.Layer, len(layers))
	for i, l := range layers {
		out[i] = snapshot.Layer{DiffID: l.DiffID(), Open: func(ctx context.Context) (io.ReadCloser, error) {
			rc, err := layer.UncompressedLimit(ctx, l, e.cfg.MaxLayerSize)
			if err != nil {
				return rc, err
			}
			return e.keepingSplit(rc, l.DiffID()), nil
		}}
	}
	return out
}

// keepingSplit records the tar-split of a layer the driver extracts into a
// tree it keeps (a base layer): the store commit moves that tree in with
// this tar-split instead of decompressing and parsing the layer again.
func (e *Executor) keepingSplit(rc io.ReadCloser, diffID digest.Digest) io.ReadCloser {
	tf, ok := e.cfg.Snapshots.(snapshot.TreeFinder)
	if !ok {
		return rc
	}
	f, err := os.CreateTemp(e.cfg.WorkDir, "split-")
	if err != nil {
		return rc
	}
	f.Close()
	return layer.SplitReader(rc, diffID, f.Name(), func(ts *layer.TarSplit, size int64) {
		meta := &snapshot.SplitMeta{Size: size, UIDs: ts.UIDs, GIDs: ts.GIDs}
		if _, err := tf.KeepSplit(diffID, ts.Path, meta); err != nil {
			os.Remove(ts.Path)
			e.cfg.Log.Debug("tar-split of an extracted layer not kept", "layer", diffID, "err", err)
		}
	})
}

// prepare gives a writable snapshot of the stage's file tree.
func (e *Executor) prepare(ctx context.Context, s *stageState) (snapshot.Mount, error) {
	m, err := e.cfg.Snapshots.Prepare(ctx, e.snapLayers(s.img.Layers))
	if err != nil {
		return nil, fmt.Errorf("prepare snapshot (%s): %w", e.cfg.Snapshots.Name(), err)
	}
	return m, nil
}

func (e *Executor) applyLayer(ctx context.Context, root string, l image.Layer) error {
	rc, err := layer.UncompressedLimit(ctx, l, e.cfg.MaxLayerSize)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = snapshot.Apply(ctx, root, rc, snapshot.ApplyOptions{
		NoChown:           !e.chownOK,
		IgnoreChownErrors: true,
		IgnoreXattrErrors: true,
		SkipDevices:       true, // EPERM in a user namespace, even as its root
	})
	if err != nil {
		return fmt.Errorf("extract layer %s: %w", l.Descriptor().Digest, err)
	}
	return nil
}

// commitMount turns the snapshot's changes into a layer, commits the
// snapshot under that layer and records history. A step that changed
// nothing adds no layer (history says empty_layer), as BuildKit does.
func (e *Executor) commitMount(ctx context.Context, s *stageState, m snapshot.Mount, createdBy string) error {
	comp := e.cfg.Compression
	tf, trees := e.cfg.Snapshots.(snapshot.TreeFinder)
	// A build bound for the local store only, with a driver that keeps
	// layer trees: the committed tree and its tar-split are the layer (the
	// store commit moves the tree of a final-stage layer in); no scratch
	// tar, no blob is written.
	comp.SplitOnly = trees && comp.RawDir != "" && comp.Kind == compress.None
	if !s.final && !comp.SplitOnly {
		// Not in the image the store commit writes: the blob store keeps it
		// (for COPY --from, FROM and the cache), with no scratch copy.
		comp.RawDir = ""
	}
	l, err := layer.Write(ctx, e.cfg.Blobs, comp, func(w io.Writer) error {
		return m.Diff(ctx, w, e.writeOptions())
	})
	if err != nil {
		return fmt.Errorf("write layer: %w", err)
	}
	if st, ok := l.(*layer.Stored); ok && st.TarLen <= emptyTarLen {
		s.addHistory(e, createdBy, nil)
		return m.Release()
	}
	if err := m.Commit(ctx, l.DiffID()); err != nil {
		return fmt.Errorf("commit snapshot: %w", err)
	}
	if st, ok := l.(*layer.Stored); ok && comp.SplitOnly {
		d := l.DiffID()
		st.Tree = func() (string, bool) { return tf.Tree(d) }
		if !s.final {
			// The stage's layer outlives the build as its tree: the
			// tar-split stays beside it, for the cache entry.
			var meta *snapshot.SplitMeta
			if st.Split.Owners {
				meta = &snapshot.SplitMeta{Size: st.TarLen, UIDs: st.Split.UIDs, GIDs: st.Split.GIDs}
			}
			kept, err := tf.KeepSplit(d, st.Split.Path, meta)
			if err != nil {
				return err
			}
			st.Split.Path = kept
		}
	}
	s.addHistory(e, createdBy, l)
	if s.final {
		e.hand.known(slices.Clone(s.img.Layers))
	}
	return nil
}

// emptyTarLen is the size of a tar with no entries (two zero blocks).
const emptyTarLen = 1024

// stepsShown is 1 (the FROM line) unless Lower already led with a FROM
// normalising step, which is then shown as the FROM line.
func stepsShown(steps []dockerfile.Step) int {
	for _, step := range steps {
		if m, ok := step.(*dockerfile.Meta); ok && m.NoHistory && strings.HasPrefix(m.Text, "FROM ") {
			return 0
		}
	}
	return 1
}

// resolved is the key of the one resolution cache: FROM, COPY --from and
// RUN --mount from= of the same image for the same platform are the same
// image within a build.
type resolved struct {
	ref  string
	plat platform.Platform
}

// resolve resolves an image reference once per build and platform (the
// up-front cache probe and the steps ask for the same ones; a second
// resolve could pull again, or see a moved tag).
func (e *Executor) resolve(ctx context.Context, ref string, p platform.Platform) (*image.Image, error) {
	if nc, ok := e.cfg.NamedContexts[ref]; ok {
		if nc.Dir != "" {
			return nil, fmt.Errorf("build context %q is a directory; FROM needs an image (give --build-context %s=docker-image://REF)", ref, ref)
		}
		ref = nc.Image
	}
	k := resolved{ref, p}
	// Stages running at once may name the same image: it is resolved
	// (pulled) once, others wait for it; different images resolve at once.
	e.mu.Lock()
	r, ok := e.resolved[k]
	if !ok {
		if e.resolved == nil {
			e.resolved = map[resolved]*resolution{}
		}
		r = &resolution{done: make(chan struct{})}
		e.resolved[k] = r
	}
	e.mu.Unlock()
	if ok {
		select {
		case <-r.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if r.err != nil {
			return nil, r.err
		}
		return r.img, nil
	}
	r.img, r.err = e.cfg.Resolver.Resolve(ctx, ref, p)
	if r.err != nil {
		e.mu.Lock()
		delete(e.resolved, k) // a later step tries again
		e.mu.Unlock()
	}
	close(r.done)
	return r.img, r.err
}

// resolution is one reference being resolved, or resolved, in a build.
type resolution struct {
	done chan struct{}
	img  *image.Image
	err  error
}

// applyMeta applies a config instruction to the stage's own config (a
// clone of its base's: cloneImage), in place.
func applyMeta(s *stageState, m *dockerfile.Meta) {
	if m.Change != nil {
		m.Change(&s.img.Config.Config)
	}
}

// writeOptions are the layer writer's options. Without chown (a single-id
// user namespace, or no user namespace at all), files are really this
// process's: they are root's in the layer unless an owner was recorded.
func (e *Executor) writeOptions() snapshot.WriteOptions {
	o := snapshot.WriteOptions{Clamp: e.cfg.Timestamp}
	if !e.chownOK {
		uid, gid := os.Geteuid(), os.Getegid()
		o.RecordedOwners = true
		o.MapOwner = func(u, g int) (int, int) {
			if u == uid {
				u = 0
			}
			if g == gid {
				g = 0
			}
			return u, g
		}
	}
	return o
}

// squash replaces the layers s added above its base image with one layer
// holding their net effect (--squash, as buildah's: the base's layers
// stay): the new layers are applied, in order, over a snapshot of the
// base, whose diff is the layer.
func (e *Executor) squash(ctx context.Context, s *stageState) error {
	if len(s.img.Layers)-s.baseLayers < 2 {
		return nil // nothing to merge
	}
	base, added := s.img.Layers[:s.baseLayers], s.img.Layers[s.baseLayers:]
	m, err := e.cfg.Snapshots.Prepare(ctx, e.snapLayers(base))
	if err != nil {
		return err
	}
	defer m.Release()
	for _, l := range added {
		if err := e.applyLayer(ctx, m.Root(), l); err != nil {
			return err
		}
	}
	hist := s.img.Config.History
	s.img.Layers = slices.Clone(base)
	s.img.Config.RootFS.DiffIDs = slices.Clone(s.img.Config.RootFS.DiffIDs[:s.baseLayers])
	s.img.Config.History = slices.Clone(hist[:min(s.baseHistory, len(hist))])
	return e.commitMount(ctx, s, m, "builder --squash")
}
