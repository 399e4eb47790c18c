package cache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/builder-dev/builder/content"
	"github.com/builder-dev/builder/platform"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// entry stores a blob of size n and a record for it under a key named by i.
func entry(t *testing.T, x *Index, b *content.Store, i int, n int, used time.Time) (Key, digest.Digest) {
	t.Helper()
	d, size, err := b.Put(strings.NewReader(strings.Repeat(string(rune('a'+i)), n)), "")
	if err != nil {
		t.Fatal(err)
	}
	k := Root(digest.FromString("base"), platform.Platform{OS: "linux", Architecture: "amd64"}).Next([]byte{byte(i)})
	rec := Record{Key: k.Hex(), Step: "RUN " + string(rune('a'+i)), Created: used,
		Layer: &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: size}, DiffID: d}
	if err := x.Put(rec); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(x.entryPath(k), used, used)
	return k, d
}

func TestIndexGetPutTornAndTTL(t *testing.T) {
	dir := t.TempDir()
	b, _ := content.OpenStore(filepath.Join(dir, "blobs"))
	x, err := OpenIndex(filepath.Join(dir, "cache"), b)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	k, d := entry(t, x, b, 0, 10, time.Now())
	if _, err := x.Get(k, 0); err != nil {
		t.Fatalf("get: %v", err)
	}
	if _, err := x.Get(k, time.Nanosecond); !errors.Is(err, ErrMiss) {
		t.Errorf("entry older than the TTL: %v, want a miss", err)
	}
	// A torn entry (as a killed writer without rename could not leave, but
	// a damaged disk could) and an entry whose blob is gone are misses.
	os.WriteFile(x.entryPath(k), []byte(`{"key":`), 0o600)
	if _, err := x.Get(k, 0); !errors.Is(err, ErrMiss) {
		t.Errorf("torn entry: %v, want a miss", err)
	}
	k2, d2 := entry(t, x, b, 1, 10, time.Now())
	os.Remove(b.Path(d2))
	if _, err := x.Get(k2, 0); !errors.Is(err, ErrMiss) {
		t.Errorf("entry without its blob: %v, want a miss", err)
	}
	_ = d
}

func TestPruneByAgeAndSize(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, _ := content.OpenStore(filepath.Join(dir, "blobs"))
	x, err := OpenIndex(filepath.Join(dir, "cache"), b)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	old, dOld := entry(t, x, b, 0, 100, now.Add(-48*time.Hour))
	mid, dMid := entry(t, x, b, 1, 100, now.Add(-2*time.Hour))
	fresh, dFresh := entry(t, x, b, 2, 100, now)
	x.Close() // Prune waits for open indexes

	res, err := Prune(ctx, filepath.Join(dir, "cache"), b, PruneOptions{MaxAge: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if res.Entries != 1 || res.Blobs != 1 {
		t.Errorf("by age: removed %+v, want 1 entry and its blob", res)
	}
	if _, err := b.Stat(dOld); err == nil {
		t.Error("the old entry's blob is still there")
	}
	// Size: the least recently used goes first.
	if _, err := Prune(ctx, filepath.Join(dir, "cache"), b, PruneOptions{MaxBytes: 150}); err != nil {
		t.Fatal(err)
	}
	x, _ = OpenIndex(filepath.Join(dir, "cache"), b)
	defer x.Close()
	if _, err := x.Get(mid, 0); !errors.Is(err, ErrMiss) {
		t.Errorf("least recently used entry kept over the size limit")
	}
	if _, err := x.Get(fresh, 0); err != nil {
		t.Errorf("most recent entry removed: %v", err)
	}
	if _, err := b.Stat(dMid); err == nil {
		t.Error("blob of the removed entry kept")
	}
	if _, err := b.Stat(dFresh); err != nil {
		t.Error("blob of the kept entry removed")
	}
	_ = old
}

// Prune waits for every holder of the shared lock (builds, pushes and
// pulls), so no blob in use disappears under them.
func TestPruneWaitsForSharedLock(t *testing.T) {
	dir := t.TempDir()
	b, _ := content.OpenStore(filepath.Join(dir, "blobs"))
	held, err := SharedLock(filepath.Join(dir, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := Prune(ctx, filepath.Join(dir, "cache"), b, PruneOptions{All: true}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("prune did not wait for the lock holder: %v", err)
	}
	held.Close()
	if _, err := Prune(context.Background(), filepath.Join(dir, "cache"), b, PruneOptions{All: true}); err != nil {
		t.Fatalf("prune after release: %v", err)
	}
}
