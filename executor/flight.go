package executor

// Steps shared between the executors of one build, one per platform: a
// step is held by its cache key while it runs, and what it made is kept
// for the others, so a step whose key is the same for every platform (a
// FROM --platform=$BUILDPLATFORM stage that does not read TARGETARCH, the
// usual cross-compile pattern) runs once and the other platforms take its
// layer — through the keys, as the layer cache would, with no special
// case for such stages. It also covers what the cache cannot: --no-cache,
// and layers that live only in this build until the store commit.

import (
	"context"
	"sync"

	"github.com/builder-dev/builder/cache"
	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/platform"
)

// Flight is shared by the executors of one build (Config.Flight).
type Flight struct {
	mu   sync.Mutex
	keys map[cache.Key]*flightEntry
}

// flightEntry is one step key: sem is held while the step runs.
type flightEntry struct {
	sem   chan struct{}
	done  bool
	layer image.Layer // nil: the step made an empty layer
	by    platform.Platform
}

// acquire waits until no other executor runs the step k and holds it.
func (f *Flight) acquire(ctx context.Context, k cache.Key) (*flightEntry, error) {
	f.mu.Lock()
	if f.keys == nil {
		f.keys = map[cache.Key]*flightEntry{}
	}
	e, ok := f.keys[k]
	if !ok {
		e = &flightEntry{sem: make(chan struct{}, 1)}
		f.keys[k] = e
	}
	f.mu.Unlock()
	select {
	case e.sem <- struct{}{}:
		return e, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (e *flightEntry) release() { <-e.sem }
