package snapshot

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// Goroutines of one process waiting for a layer lock queue on the
// in-process lock (woken by the release itself, not a later poll of the
// flock), a cancelled wait gives up, and nothing is left once all are done.
func TestFlockPathInProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	refs := func() int {
		localLocks.mu.Lock()
		defer localLocks.mu.Unlock()
		if l := localLocks.m[path]; l != nil {
			return l.refs
		}
		return 0
	}
	unlock, err := flockPath(context.Background(), path)
	mustDo(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := flockPath(ctx, path); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled wait: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		u, err := flockPath(context.Background(), path)
		if err != nil {
			t.Error(err)
			return
		}
		u()
	}()
	for deadline := time.Now().Add(10 * time.Second); refs() != 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the waiter is not queued on the in-process lock (refs %d)", refs())
		}
	}
	unlock()
	<-done
	if n := refs(); n != 0 {
		t.Errorf("in-process lock left with %d refs", n)
	}
}
