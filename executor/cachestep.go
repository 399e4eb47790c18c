package executor

import (
	"context"
	"errors"
	"fmt"
	"github.com/builder-dev/builder/internal/compress"
	"github.com/builder-dev/builder/snapshot"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/builder-dev/builder/cache"
	"github.com/builder-dev/builder/dockerfile"
	"github.com/builder-dev/builder/internal/layer"
	digest "github.com/opencontainers/go-digest"
)

// stepTime is one step's outcome for the summary line.
type stepTime struct {
	text   string
	d      time.Duration
	cached bool
}

// cachedStep runs step unless the layer cache holds its result. A hit
// appends the cached layer (or empty-layer history) without preparing a
// snapshot: nothing is extracted or run until a later step misses.
func (e *Executor) cachedStep(ctx context.Context, s *stageState, step dockerfile.Step, done map[int]*stageState, prefix string) error {
	start := time.Now()
	if e.cfg.Cache == nil {
		return e.runStep(ctx, s, step, done, prefix)
	}
	if m, ok := step.(*dockerfile.Meta); ok && m.Mkdir == "" {
		// Config only: later keys cover its effect (RUN carries its Env, User,
		// Dir; COPY its --chown and destination).
		return e.runStep(ctx, s, step, done, prefix)
	}
	k, err := e.stepKey(ctx, s, step, done)
	if err != nil {
		return err
	}
	if k.key.IsZero() {
		s.key = cache.Key{} // not cacheable, nor is anything built on it
		err := e.runStep(ctx, s, step, done, prefix)
		e.times = append(e.times, stepTime{text: step.String(), d: time.Since(start)})
		return err
	}
	if !e.cfg.NoCache {
		rec, err := e.cfg.Cache.Get(k.key, e.cfg.CacheTTL)
		from := ""
		if err != nil {
			rec, from, err = e.fetchRemote(ctx, k.key)
		}
		if err == nil {
			e.applyHit(s, step, rec)
			e.stepf("--> Using cache %s%s", k.key.Hex(), from)
			s.key = k.key
			e.export(ctx, rec)
			e.times = append(e.times, stepTime{text: step.String(), d: time.Since(start), cached: true})
			return nil
		}
		if e.cfg.ExplainCache {
			e.stepf("--> Cache miss: %s", e.explainMiss(s.key, k, step))
		}
	}
	layers := len(s.img.Layers)
	if err := e.runStep(ctx, s, step, done, prefix); err != nil {
		return err
	}
	rec := cache.Record{Key: k.key.Hex(), Parent: s.key.Hex(), Step: step.String(), Inputs: k.inputs, Created: time.Now().UTC()}
	if len(s.img.Layers) > layers {
		l := s.img.Layers[len(s.img.Layers)-1]
		d := l.Descriptor()
		rec.Layer, rec.DiffID = &d, l.DiffID()
	}
	if k.files != nil {
		if err := e.cfg.Cache.PutFiles(k.key, k.files); err != nil {
			e.cfg.Log.Warn("cannot record the cache entry's file list", "err", err)
		}
	}
	if err := e.cfg.Cache.Put(rec); err != nil {
		e.cfg.Log.Warn("cannot record the cache entry", "step", step.String(), "err", err)
	}
	e.export(ctx, rec)
	s.key = k.key
	e.times = append(e.times, stepTime{text: step.String(), d: time.Since(start)})
	return nil
}

// fetchRemote looks key up in the --cache-from repositories, in order; a
// hit is verified, kept in the local blob store and index.
func (e *Executor) fetchRemote(ctx context.Context, key cache.Key) (cache.Record, string, error) {
	for _, r := range e.cfg.CacheFrom {
		rec, err := r.Fetch(ctx, key, e.cfg.Blobs)
		if err != nil {
			if !errors.Is(err, cache.ErrMiss) {
				e.cfg.Log.Warn("remote cache lookup failed", "cache", r.String(), "err", err)
			}
			continue
		}
		if err := e.cfg.Cache.Put(rec); err != nil {
			e.cfg.Log.Warn("cannot record the cache entry", "err", err)
		}
		return rec, " (from " + r.String() + ")", nil
	}
	return cache.Record{}, "", cache.ErrMiss
}

// export uploads rec to --cache-to in the background; Build waits for the
// uploads at its end and reports failures as warnings (the image is fine).
func (e *Executor) export(ctx context.Context, rec cache.Record) {
	if e.cfg.CacheTo == nil {
		return
	}
	e.exports.Go(func() {
		if err := e.cfg.CacheTo.Export(ctx, rec, e.cfg.Blobs); err != nil {
			e.exportMu.Lock()
			e.exportErr = append(e.exportErr, err)
			e.exportMu.Unlock()
		}
	})
}

// applyHit gives s what running step would have: the cached layer (or an
// empty-layer history entry) and, for WORKDIR, the config.
func (e *Executor) applyHit(s *stageState, step dockerfile.Step, rec cache.Record) {
	if m, ok := step.(*dockerfile.Meta); ok {
		s.img.Config.Config = m.Config
		if m.Author != "" {
			s.img.Config.Author = m.Author
		}
		if m.NoHistory {
			return
		}
	}
	if rec.Layer == nil {
		s.addHistory(e, step.String(), nil)
		return
	}
	s.addHistory(e, step.String(), &layer.Stored{Blobs: e.cfg.Blobs, Desc: *rec.Layer, Diff: rec.DiffID})
}

// explainMiss names the first input of k that differs from the nearest
// cached entry after the same parent.
func (e *Executor) explainMiss(parent cache.Key, k keyed, step dockerfile.Step) string {
	kids := e.cfg.Cache.Children(parent)
	if len(kids) == 0 {
		return "nothing cached after the previous step (the base image digest, an earlier step or a build setting changed, or this is the first build)"
	}
	// Nearest: the same instruction if cached, else the latest entry.
	near := kids[0]
	for _, r := range kids {
		if r.Step == step.String() {
			near = r
			break
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
	names := make([]string, 0, len(cur))
	for n := range cur {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
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
	for _, t := range e.times {
		mark := ""
		if t.cached {
			hits++
			mark = " (cached)"
		}
		parts = append(parts, fmt.Sprintf("%s %.2fs%s", firstWord(t.text), t.d.Seconds(), mark))
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
	if e.cfg.CacheTo == nil {
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
