package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/builder-dev/builder/cache"
	"github.com/builder-dev/builder/compress"
	"github.com/builder-dev/builder/dockerfile"
	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/layer"
	"github.com/builder-dev/builder/platform"
	"github.com/builder-dev/builder/snapshot"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// imageStep is the Step of the record that keeps a build's creation time
// (reuseCreated); it is no instruction and never a miss's nearest entry.
const imageStep = "(image)"

// stepTime is one step's outcome for the summary line.
type stepTime struct {
	text   string
	d      time.Duration
	cached bool
}

// cachedStep runs step unless the layer cache holds its result. A hit
// appends the cached layer (or empty-layer history) without preparing a
// snapshot: nothing is extracted or run until a later step misses. It
// says whether the step came from a cache.
func (e *Executor) cachedStep(ctx context.Context, s *stageState, step dockerfile.Step, done map[int]*stageState, prefix string) (bool, error) {
	start := time.Now()
	if e.cfg.Cache == nil {
		return false, e.runStep(ctx, s, step, done, prefix)
	}
	if m, ok := step.(*dockerfile.Meta); ok && m.Mkdir == "" {
		// Config only: later keys cover its effect (RUN carries its Env, User,
		// Dir; COPY its --chown and destination).
		return false, e.runStep(ctx, s, step, done, prefix)
	}
	k, err := e.stepKey(ctx, s, step, done)
	if err != nil {
		return false, err
	}
	if k.key.IsZero() {
		s.key = cache.Key{} // not cacheable, nor is anything built on it
		err := e.runStep(ctx, s, step, done, prefix)
		e.addTime(stepTime{text: step.String(), d: time.Since(start)})
		return false, err
	}
	// Another platform of this build may run (or have run) the same step.
	var fl *flightEntry
	if e.cfg.Flight != nil {
		if fl, err = e.cfg.Flight.acquire(ctx, k.key); err != nil {
			return false, err
		}
		defer fl.release()
		if fl.done {
			e.applyHit(s, step, fl.layer)
			e.stepf("%s--> Using cache %s (made for %s in this build)", s.tag, k.key.Hex(), fl.by)
			s.key = k.key
			e.addTime(stepTime{text: step.String(), d: time.Since(start), cached: true})
			return true, nil
		}
	}
	// The same step on the same content: a hit even if an earlier step ran
	// again (other inputs) and made the same layer.
	ck := e.contentKey(s).Next(k.def, k.inputs...)
	if !e.cfg.NoCache {
		rec, from, err := e.lookup(ctx, k.key, ck)
		var hit image.Layer
		if err == nil {
			hit, err = e.hitLayer(rec)
		}
		if err == nil {
			e.applyHit(s, step, hit)
			e.stepf("%s--> Using cache %s%s", s.tag, k.key.Hex(), from.say)
			s.key = k.key
			// The shared cache gets the entry too, unless that is where it
			// came from.
			if e.cfg.CacheTo != nil && (from.remote == nil || from.remote.String() != e.cfg.CacheTo.String()) {
				for _, key := range []cache.Key{k.key, ck} {
					if !key.IsZero() {
						rec.Key = key.Hex()
						e.export(ctx, s, rec, hit)
					}
				}
			}
			e.addTime(stepTime{text: step.String(), d: time.Since(start), cached: true})
			if fl != nil {
				fl.done, fl.layer, fl.by = true, hit, e.platform
			}
			return true, nil
		}
		if e.cfg.ExplainCache {
			e.stepf("%s--> Cache miss: %s", s.tag, e.explainMiss(s, k, step))
		}
	}
	layers := len(s.img.Layers)
	if s.reuse = e.previousCopy(s, step, k); s.reuse != nil {
		defer func() { s.reuse.root.Close(); s.reuse = nil }()
	}
	if err := e.runStep(ctx, s, step, done, prefix); err != nil {
		return false, err
	}
	rec := cache.Record{Key: k.key.Hex(), Parent: s.key.Hex(), Step: step.String(), Inputs: k.inputs, Created: time.Now().UTC()}
	var made image.Layer
	if len(s.img.Layers) > layers {
		made = s.img.Layers[len(s.img.Layers)-1]
		d := made.Descriptor()
		rec.Layer, rec.DiffID = &d, made.DiffID()
		// A scratch layer's lasting copy is the store commit's: the entry
		// is valid once the store holds it.
		rec.InStore = layer.Scratch(made)
		if st, ok := made.(*layer.Stored); ok && st.Tree != nil && !s.final {
			// Kept as the stage's tree and tar-split (see commitMount).
			rec.InStore, rec.InTree = false, true
		}
	}
	e.record(ctx, s, rec, ck, made, k)
	if fl != nil {
		fl.done, fl.layer, fl.by = true, made, e.platform
	}
	s.key = k.key
	e.addTime(stepTime{text: step.String(), d: time.Since(start)})
	return false, nil
}

// source says where a hit came from: the local index (remote nil) or a
// --cache-from repository, and how to say so after "Using cache".
type source struct {
	remote *cache.Remote
	say    string
}

// lookup finds a step's record by its key, then by its content key, in
// the local index, then in --cache-from. A record found by the content key
// is recorded under the key too (the next build finds it directly).
func (e *Executor) lookup(ctx context.Context, key, ck cache.Key) (cache.Record, source, error) {
	if rec, err := e.cfg.Cache.Get(key, e.cfg.CacheTTL); err == nil {
		return rec, source{}, nil
	}
	if rec, err := e.cfg.Cache.Get(ck, e.cfg.CacheTTL); err == nil {
		rec.Key = key.Hex()
		e.put(rec)
		return rec, source{say: " (same content)"}, nil
	}
	if !e.probed[key] { // the up-front probe already asked for it
		if rec, from, err := e.fetchRemote(ctx, key); err == nil {
			return rec, from, nil
		}
	}
	if ck.IsZero() {
		return cache.Record{}, source{}, cache.ErrMiss
	}
	rec, from, err := e.fetchRemote(ctx, ck)
	if err == nil {
		rec.Key = key.Hex()
		e.put(rec)
	}
	return rec, from, err
}

// put records rec in the local index; a failure only costs a later hit.
func (e *Executor) put(rec cache.Record) {
	if err := e.cfg.Cache.Put(rec); err != nil {
		e.cfg.Log.Warn("cannot record the cache entry", "step", rec.Step, "err", err)
	}
}

// record keeps a step's result under its key and its content key, with
// the step's file list, locally and in --cache-to, both in the background:
// the next step need not wait for the index's synced writes (Close and the
// next Build wait for them).
func (e *Executor) record(ctx context.Context, s *stageState, rec cache.Record, ck cache.Key, l image.Layer, k keyed) {
	recs := []cache.Record{rec}
	if !ck.IsZero() {
		alt := rec
		alt.Key = ck.Hex()
		recs = append(recs, alt)
	}
	e.records.Go(func() {
		if k.files != nil {
			if err := e.cfg.Cache.PutFiles(k.key, k.files); err != nil {
				e.cfg.Log.Warn("cannot record the cache entry's file list", "err", err)
			}
		}
		for _, r := range recs {
			e.put(r)
		}
	})
	for _, r := range recs {
		e.export(ctx, s, r, l)
	}
}

// fetchRemote looks key up in the --cache-from repositories, in order; a
// hit is verified, kept in the local blob store and index.
// When no repository has it, the error is ErrMiss if every one answered,
// else the last failure.
func (e *Executor) fetchRemote(ctx context.Context, key cache.Key) (cache.Record, source, error) {
	var failed error
	for _, r := range e.cfg.CacheFrom {
		rec, err := r.Fetch(ctx, key, e.cfg.Blobs)
		if err != nil {
			if !errors.Is(err, cache.ErrMiss) {
				e.cfg.Log.Warn("remote cache lookup failed", "cache", r.String(), "err", err)
				failed = err
			}
			continue
		}
		e.put(rec)
		return rec, source{remote: r, say: " (from " + r.String() + ")"}, nil
	}
	if failed != nil {
		return cache.Record{}, source{}, failed
	}
	return cache.Record{}, source{}, cache.ErrMiss
}

// export uploads rec to --cache-to in the background; Build waits for the
// uploads at its end and reports failures as warnings (the image is fine).
func (e *Executor) export(ctx context.Context, s *stageState, rec cache.Record, l image.Layer) {
	if e.cfg.CacheTo == nil || e.cfg.CacheToMin && !s.final {
		return // mode=min: the target stage's steps only
	}
	open := func() (io.ReadCloser, error) {
		if l == nil {
			return nil, errors.New("no layer")
		}
		return l.Open(ctx)
	}
	e.exports.Go(func() {
		if err := e.cfg.CacheTo.Export(ctx, rec, open); err != nil {
			e.exportMu.Lock()
			e.exportErr = append(e.exportErr, err)
			e.exportMu.Unlock()
		}
	})
}

// applyHit gives s what running step would have: the cached layer (or an
// empty-layer history entry) and, for WORKDIR, the config.
func (e *Executor) applyHit(s *stageState, step dockerfile.Step, l image.Layer) {
	if m, ok := step.(*dockerfile.Meta); ok {
		applyMeta(s, m)
		if m.Author != "" {
			s.img.Config.Author = m.Author
		}
		if m.NoHistory {
			return
		}
	}
	s.addHistory(e, e.createdBy(step), l) // nil: an empty layer
}

// hitLayer is the layer a cache record stands for: its blob, or the local
// store's layer for records of builds that kept no blob; nil for an empty
// layer. An error makes the hit a miss.
func (e *Executor) hitLayer(rec cache.Record) (image.Layer, error) {
	switch {
	case rec.Layer == nil:
		return nil, nil
	case rec.InStore:
		if e.cfg.StoreLayer == nil {
			return nil, cache.ErrMiss
		}
		return e.cfg.StoreLayer(rec.DiffID)
	case rec.InTree:
		tf, ok := e.cfg.Snapshots.(snapshot.TreeFinder)
		if !ok {
			return nil, cache.ErrMiss
		}
		sp, meta, ok := tf.Split(rec.DiffID)
		if _, tree := tf.Tree(rec.DiffID); !ok || !tree {
			return nil, cache.ErrMiss
		}
		d := rec.DiffID
		split := &layer.TarSplit{Path: sp}
		if meta != nil && meta.Size == rec.Layer.Size {
			// The store commit takes the owners from here, not the tar.
			split.UIDs, split.GIDs, split.Owners = meta.UIDs, meta.GIDs, true
		}
		return &layer.Stored{Desc: *rec.Layer, Diff: d, TarLen: rec.Layer.Size,
			Split: split, Tree: func() (string, bool) { return tf.Tree(d) }}, nil
	default:
		return &layer.Stored{Blobs: e.cfg.Blobs, Desc: *rec.Layer, Diff: rec.DiffID}, nil
	}
}

// explainMiss names the first input of k that differs from the nearest
// cached entry after the same parent.
func (e *Executor) explainMiss(s *stageState, k keyed, step dockerfile.Step) string {
	parent := s.key
	var kids []cache.Record
	for _, r := range e.cfg.Cache.Children(parent) {
		if r.Step != imageStep {
			kids = append(kids, r)
		}
	}
	if len(kids) == 0 {
		if parent == s.base && s.baseRef != "" {
			if old := e.otherBase(s); old != "" {
				return fmt.Sprintf("the base image %s is now %s; the cache holds steps on %s", s.baseRef, s.baseID, old)
			}
		}
		return "nothing cached after the previous step (an earlier step, the base image or a build setting changed, or this is the first build)"
	}
	// Nearest: the same instruction if cached (the entry that kept its file
	// list, when one did: a step's content-key twin does not), else the
	// latest entry.
	near := kids[0]
	for _, r := range kids {
		if r.Step != step.String() {
			continue
		}
		if near.Step != step.String() || (e.cfg.Cache.Files(mustKey(near.Key)) == nil && e.cfg.Cache.Files(mustKey(r.Key)) != nil) {
			near = r
		}
	}
	if near.Step != step.String() {
		return fmt.Sprintf("the instruction differs from the cached %q", near.Step)
	}
	old := map[string]digest.Digest{}
	for _, in := range near.Inputs {
		old[in.Name] = in.Digest
	}
	for _, in := range k.inputs {
		d, ok := old[in.Name]
		if ok && d == in.Digest {
			continue
		}
		if !ok {
			return fmt.Sprintf("new input %s", in.Name)
		}
		if in.Name == "context" {
			if f := changedFile(e.cfg.Cache.Files(mustKey(near.Key)), k.files); f != "" {
				return f
			}
		}
		return fmt.Sprintf("%s changed", in.Name)
	}
	return "the expanded instruction differs (environment, build args, user, workdir or flags)"
}

func mustKey(hex string) cache.Key {
	k, _ := cache.ParseKey(hex)
	return k
}

// changedFile names the first source path whose entry differs.
func changedFile(old, cur map[string]digest.Digest) string {
	if old == nil || cur == nil {
		return ""
	}
	for _, n := range slices.Sorted(maps.Keys(cur)) {
		d, ok := old[n]
		switch {
		case !ok:
			return "file " + n + " was added"
		case d != cur[n]:
			return "file " + n + " changed"
		}
	}
	var gone []string
	for n := range old {
		if _, ok := cur[n]; !ok {
			gone = append(gone, n)
		}
	}
	if len(gone) > 0 {
		sort.Strings(gone)
		return "file " + gone[0] + " was removed"
	}
	return ""
}

// cacheSummary is the final line: hits, misses and each step's time.
func (e *Executor) cacheSummary() string {
	if e.cfg.Cache == nil || len(e.times) == 0 {
		return ""
	}
	var hits int
	var parts []string
	for i, t := range e.times {
		mark := ""
		if t.cached {
			hits++
			mark = " (cached)"
		}
		parts = append(parts, fmt.Sprintf("#%d %s %.2fs%s", i+1, firstWord(t.text), t.d.Seconds(), mark))
	}
	return fmt.Sprintf("Cache: %d hit(s), %d miss(es); %s", hits, len(e.times)-hits, strings.Join(parts, ", "))
}

// importMount fills the new cache mount directory dir with the contents of
// cache mount id exported to a --cache-from repository, if any: extracted
// beside dir and renamed into place, so a failure leaves no half cache.
func (e *Executor) importMount(ctx context.Context, id, dir string) {
	for _, r := range e.cfg.CacheFrom {
		desc, err := r.FetchMount(ctx, id, e.cfg.Blobs)
		if err != nil {
			if !errors.Is(err, cache.ErrMiss) {
				e.cfg.Log.Warn("cannot import cache mount", "id", id, "cache", r.String(), "err", err)
			}
			continue
		}
		err = os.MkdirAll(filepath.Dir(dir), 0o700)
		var tmp string
		if err == nil {
			tmp, err = os.MkdirTemp(filepath.Dir(dir), ".import-")
		}
		if err == nil {
			err = e.applyLayer(ctx, tmp, &layer.Stored{Blobs: e.cfg.Blobs, Desc: desc, Diff: ""})
		}
		if err == nil {
			os.Chmod(tmp, 0o755)
			err = os.Rename(tmp, dir)
		}
		if err != nil {
			os.RemoveAll(tmp)
			e.cfg.Log.Warn("cannot import cache mount", "id", id, "err", err)
			continue
		}
		e.stepf("--> Cache mount %q imported from %s", id, r.String())
		return
	}
}

// exportMounts sends the cache mounts this build used to --cache-to, each
// as one compressed tar (in the background, like step entries).
func (e *Executor) exportMounts(ctx context.Context) {
	if e.cfg.CacheTo == nil || !e.cfg.ExportMounts {
		return
	}
	ids := make([]string, 0, len(e.mountsUsed))
	for id := range e.mountsUsed {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		dir := e.mountsUsed[id]
		l, err := layer.Write(ctx, e.cfg.Blobs, layer.Compression{Kind: compress.Gzip}, func(w io.Writer) error {
			return snapshot.WriteTar(ctx, w, dir, snapshot.WriteOptions{})
		})
		if err != nil {
			e.exportMu.Lock()
			e.exportErr = append(e.exportErr, fmt.Errorf("cache mount %q: %w", id, err))
			e.exportMu.Unlock()
			continue
		}
		e.exports.Go(func() {
			if err := e.cfg.CacheTo.ExportMount(ctx, id, l.Descriptor(), e.cfg.Blobs); err != nil {
				e.exportMu.Lock()
				e.exportErr = append(e.exportErr, fmt.Errorf("cache mount %q: %w", id, err))
				e.exportMu.Unlock()
			}
		})
	}
}

// prefetch computes, before anything runs, the key of every step whose key
// does not depend on running an earlier one (all of them, since keys
// follow inputs, not outputs), and probes --cache-from for all of them at
// once: entries found land in the local index, so the build then hits
// them one after the other without a network round trip per step.
func (e *Executor) prefetch(ctx context.Context, p *dockerfile.Plan, plat platform.Platform) {
	if len(e.cfg.CacheFrom) == 0 || e.cfg.Cache == nil || e.cfg.NoCache {
		return
	}
	if e.cfg.Gate != nil && e.cfg.Gate(ctx) != nil {
		return // the build ends with the gate's error
	}
	start := time.Now()
	var keys []cache.Key
	sims := map[int]*stageState{}
	for _, st := range p.Stages {
		pl := plat
		if !st.Platform.IsZero() {
			pl = st.Platform
		}
		s, err := e.baseState(ctx, st, sims, pl)
		if err != nil {
			return // the build reports it
		}
		steps, err := p.Lower(st, s.img.Config.Config)
		if err != nil {
			return
		}
		for _, step := range steps {
			if m, ok := step.(*dockerfile.Meta); ok {
				applyMeta(s, m)
				if m.Mkdir == "" {
					continue
				}
			}
			k, err := e.stepKey(ctx, s, step, sims)
			if err != nil || k.key.IsZero() {
				s.key = cache.Key{}
				break
			}
			if _, err := e.cfg.Cache.Get(k.key, e.cfg.CacheTTL); err != nil {
				keys = append(keys, k.key)
			}
			s.key = k.key
		}
		sims[st.Index] = s
	}
	if len(keys) == 0 {
		return
	}
	e.probed = make(map[cache.Key]bool, len(keys))
	var probedMu sync.Mutex
	var found atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, k := range keys {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			_, _, err := e.fetchRemote(ctx, k)
			if err == nil {
				found.Add(1)
			}
			if err == nil || errors.Is(err, cache.ErrMiss) {
				// Answered: a step need not ask again. (A failed lookup is
				// retried when the step comes.)
				probedMu.Lock()
				e.probed[k] = true
				probedMu.Unlock()
			}
		})
	}
	wg.Wait()
	e.stepf("--> Cache: probed %d keys in %s at once, %d found (%.2fs)", len(keys), remoteNames(e.cfg.CacheFrom), found.Load(), time.Since(start).Seconds())
}

func remoteNames(rs []*cache.Remote) string {
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.String()
	}
	return strings.Join(names, ", ")
}

// reuseCreated gives a build that ran nothing the creation time of the
// first build of the same image, so it yields the same config and image ID
// (as buildah --layers and docker do) and the store commit has nothing to
// write. The time is kept under the final state's key and its config.
func (e *Executor) reuseCreated(img *image.Image, last cache.Key) {
	if e.cfg.Cache == nil || e.cfg.Timestamp != nil || last.IsZero() || e.started.IsZero() {
		return
	}
	cfg := img.Config
	cfg.Created, cfg.History = nil, nil
	def, err := json.Marshal(struct {
		Config  any
		History []string
	}{cfg, historyText(img.Config.History)})
	if err != nil {
		return
	}
	k := last.Next(append([]byte("image "), def...))
	if rec, err := e.cfg.Cache.Get(k, e.cfg.CacheTTL); err == nil && !e.missed && !e.cfg.NoCache {
		t := rec.Created.UTC()
		for i := range img.Config.History {
			if h := img.Config.History[i].Created; h != nil && h.Equal(e.started) {
				img.Config.History[i].Created = &t
			}
		}
		if img.Config.Created != nil && img.Config.Created.Equal(e.started) {
			img.Config.Created = &t
		}
		return
	}
	if err := e.cfg.Cache.Put(cache.Record{Key: k.Hex(), Parent: last.Hex(), Step: imageStep, Created: e.started}); err != nil {
		e.cfg.Log.Warn("cannot record the image's creation time", "err", err)
	}
}

func historyText(h []ocispec.History) []string {
	out := make([]string, len(h))
	for i, x := range h {
		out[i] = fmt.Sprintf("%s\x00%v\x00%s", x.CreatedBy, x.EmptyLayer, x.Author)
	}
	return out
}

// noteBase records which image a stage's root key stands for, so a later
// miss can say that the base image moved (cache ls shows it as FROM).
func (e *Executor) noteBase(s *stageState) {
	if e.cfg.Cache == nil || s.key.IsZero() || s.baseID == "" {
		return
	}
	if _, err := e.cfg.Cache.Get(s.key, 0); err == nil {
		return
	}
	rec := cache.Record{Key: s.key.Hex(), Step: "FROM " + s.baseRef, Created: time.Now().UTC(),
		Inputs: []cache.Input{{Name: "base", Digest: s.baseID}}}
	if err := e.cfg.Cache.Put(rec); err != nil {
		e.cfg.Log.Debug("cannot record the base image", "err", err)
	}
}

// otherBase is the identity of another image the same FROM reference stood
// for in an earlier build ("" when none is known).
func (e *Executor) otherBase(s *stageState) string {
	all, _ := e.cfg.Cache.List()
	for _, r := range all {
		if r.Step == "FROM "+s.baseRef && r.Key != s.key.Hex() && len(r.Inputs) == 1 && r.Inputs[0].Digest != s.baseID {
			return r.Inputs[0].Digest.String()
		}
	}
	return ""
}
