package snapshot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// copyDriver materializes each snapshot as a plain directory: no mount, no privilege, so it works
// everywhere (--isolation=chroot in a pod). Diff compares the tree with an inventory taken at
// Prepare (copydiff_linux.go).
//
// Finished trees are cached on disk as <root>/copy/chains/<chainID> (the OCI ChainID of their
// layers): Prepare takes the longest cached prefix of its chain by rename (atomic, so concurrent
// builders never share one), applies the missing layers, and Commit puts the tree back under the
// longer chain; consecutive steps of a stage thus extract nothing. Trees in use live in flocked
// directories under <root>/copy/work.
type copyDriver struct {
	chains, work string
	extract      ApplyOptions
	cacheSize    int
	log          *slog.Logger

	mu     sync.Mutex
	memo   map[string]memo // chain ID -> inventory of the tree this process cached there
	active map[*copyMount]struct{}
}

// memo lets the next Prepare skip the inventory walk when it takes the very tree this process put
// back (same inode: nobody replaced it in between).
type memo struct {
	dev, ino uint64
	tree     *fnode
}

var _ Driver = (*copyDriver)(nil)

// NewCopy returns the copy driver rooted at root (created if missing); o is at most one Options.
func NewCopy(root string, opts ...Options) (Driver, error) {
	o := oneOptions(opts)
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	d := &copyDriver{chains: filepath.Join(root, "copy", "chains"), work: filepath.Join(root, "copy", "work"),
		extract: o.extract(), cacheSize: o.CacheSize, log: o.logger(), memo: map[string]memo{}, active: map[*copyMount]struct{}{}}
	if d.cacheSize <= 0 {
		d.cacheSize = 3
	}
	for _, p := range []string{d.chains, d.work} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			return nil, fmt.Errorf("copy snapshots: %w", err)
		}
	}
	sweepStale(d.work, "", nil, d.log)
	return d, nil
}

func (d *copyDriver) Name() string { return "copy" }

// Close releases the snapshots still prepared; the on-disk cache stays for the next build.
func (d *copyDriver) Close() error {
	return releaseActive(&d.mu, d.active)
}

// materialize fills md/rootfs with layers and returns the inventory if a memo had it.
func (d *copyDriver) materialize(ctx context.Context, layers []Layer, md *lockedDir) (string, []string, *fnode, error) {
	ids, err := diffIDs(layers)
	if err != nil {
		return "", nil, nil, err
	}
	chain := chainIDs(ids)
	rootfs := filepath.Join(md.path, "rootfs")
	have, tree, err := d.take(chain, rootfs)
	if err != nil {
		return "", nil, nil, err
	}
	for _, l := range layers[have:] {
		tree = nil
		if l.Open == nil {
			return "", nil, nil, fmt.Errorf("layer %s is not cached and has no content to extract", l.DiffID)
		}
		rc, err := l.Open(ctx)
		if err != nil {
			return "", nil, nil, fmt.Errorf("layer %s: %w", l.DiffID, err)
		}
		v := verifyDiffID(rc, l.DiffID)
		_, err = Apply(ctx, rootfs, v, d.extract)
		if err == nil {
			err = v.finish()
		}
		rc.Close()
		if err != nil {
			return "", nil, nil, fmt.Errorf("extract layer %s: %w", l.DiffID, err)
		}
	}
	return rootfs, chain, tree, nil
}

// take moves the cached tree of the longest prefix of chain to dst and returns its length (0: a
// fresh empty dst) and its memoized inventory, if any.
func (d *copyDriver) take(chain []string, dst string) (int, *fnode, error) {
	for k := len(chain); k > 0; k-- {
		err := unix.Rename(filepath.Join(d.chains, chain[k-1]), dst)
		if errors.Is(err, unix.ENOENT) {
			continue // not cached, or another builder took it first
		}
		if err != nil {
			return 0, nil, fmt.Errorf("copy snapshots: %w", err)
		}
		d.mu.Lock()
		m, ok := d.memo[chain[k-1]]
		delete(d.memo, chain[k-1])
		d.mu.Unlock()
		var st unix.Stat_t
		if ok && unix.Lstat(dst, &st) == nil && st.Dev == m.dev && st.Ino == m.ino {
			return k, m.tree, nil
		}
		return k, nil, nil
	}
	if err := os.Mkdir(dst, 0o755); err != nil {
		return 0, nil, err
	}
	return 0, nil, os.Chmod(dst, 0o755)
}

// put caches the tree at rootfs under chain ID id (or drops it when another builder cached one).
func (d *copyDriver) put(rootfs, id string, tree *fnode) error {
	var st unix.Stat_t
	if err := unix.Lstat(rootfs, &st); err != nil {
		return err
	}
	final := filepath.Join(d.chains, id)
	if err := publishDir(rootfs, final); err != nil {
		return fmt.Errorf("copy snapshots: %w", err)
	}
	var now unix.Stat_t
	if tree != nil && unix.Lstat(final, &now) == nil && now.Dev == st.Dev && now.Ino == st.Ino {
		d.mu.Lock()
		d.memo[id] = memo{dev: st.Dev, ino: st.Ino, tree: tree}
		d.mu.Unlock()
	}
	d.evict()
	return nil
}

// evict removes the oldest cached trees beyond cacheSize (rename changes ctime: put time), and
// forgets the inventories of trees other builders took.
func (d *copyDriver) evict() {
	d.mu.Lock()
	for id := range d.memo {
		if !dirExists(filepath.Join(d.chains, id)) {
			delete(d.memo, id)
		}
	}
	d.mu.Unlock()
	ents, err := os.ReadDir(d.chains)
	if err != nil || len(ents) <= d.cacheSize {
		return
	}
	type aged struct {
		name  string
		ctime int64
	}
	var all []aged
	for _, e := range ents {
		var st unix.Stat_t
		if unix.Lstat(filepath.Join(d.chains, e.Name()), &st) == nil {
			all = append(all, aged{e.Name(), st.Ctim.Nano()})
		}
	}
	slices.SortFunc(all, func(a, b aged) int { return cmp.Compare(a.ctime, b.ctime) })
	for _, a := range all[:max(0, len(all)-d.cacheSize)] {
		md, err := newLockedDir(d.work, "")
		if err != nil {
			return
		}
		if unix.Rename(filepath.Join(d.chains, a.name), filepath.Join(md.path, "evicted")) == nil {
			d.mu.Lock()
			delete(d.memo, a.name)
			d.mu.Unlock()
		}
		if err := removeTree(md.path); err != nil {
			d.log.Warn("cannot remove evicted snapshot", "path", md.path, "err", err)
		}
		md.unlock()
	}
}

func (d *copyDriver) Prepare(ctx context.Context, layers []Layer) (Mount, error) {
	md, err := newLockedDir(d.work, "")
	if err != nil {
		return nil, fmt.Errorf("copy snapshots: %w", err)
	}
	rootfs, _, tree, err := d.materialize(ctx, layers, md)
	if err == nil && tree == nil {
		tree, err = scanTree(ctx, rootfs)
	}
	if err != nil {
		removeTree(md.path)
		md.unlock()
		return nil, fmt.Errorf("copy: prepare: %w", err)
	}
	ids, _ := diffIDs(layers)
	m := &copyMount{d: d, dir: md, rootfs: rootfs, ids: ids, inv: tree}
	d.mu.Lock()
	d.active[m] = struct{}{}
	d.mu.Unlock()
	return m, nil
}

// View materializes (or takes from the cache) the tree of layers; release puts it back cached.
func (d *copyDriver) View(ctx context.Context, layers []Layer) (string, func() error, error) {
	md, err := newLockedDir(d.work, "")
	if err != nil {
		return "", nil, fmt.Errorf("copy snapshots: %w", err)
	}
	rootfs, chain, tree, err := d.materialize(ctx, layers, md)
	if err != nil {
		removeTree(md.path)
		md.unlock()
		return "", nil, fmt.Errorf("copy: view: %w", err)
	}
	var once sync.Once
	var rerr error
	release := func() error {
		once.Do(func() {
			if len(chain) > 0 {
				rerr = d.put(rootfs, chain[len(chain)-1], tree)
			}
			if err := removeTree(md.path); rerr == nil {
				rerr = err
			}
			md.unlock()
		})
		return rerr
	}
	return rootfs, release, nil
}

type copyMount struct {
	d      *copyDriver
	dir    *lockedDir
	rootfs string
	ids    []digest.Digest
	inv    *fnode // the tree at Prepare
	// From the last Diff: the tree after it, the entries it wrote, its clamp, whether it was empty.
	next    *fnode
	touched []touchedEntry
	clamp   *time.Time
	empty   bool
	done    bool
}

func (m *copyMount) Root() string { return m.rootfs }

// Diff compares the tree with the inventory of Prepare (see copydiff_linux.go): a walk of the
// whole tree. opts.Overlay and opts.Include are the driver's business.
func (m *copyMount) Diff(ctx context.Context, w io.Writer, opts WriteOptions) error {
	if m.done {
		return errors.New("copy: diff of a released snapshot")
	}
	opts.Include = nil
	shadow := filepath.Join(m.dir.path, "shadow")
	removeTree(shadow) // from an earlier Diff that failed half-way
	if err := os.Mkdir(shadow, 0o755); err != nil {
		return fmt.Errorf("copy: diff: %w", err)
	}
	tree, touched, err := diffTree(ctx, m.rootfs, m.inv, shadow)
	empty := false
	if err == nil {
		empty, err = isEmptyDir(shadow)
	}
	if err == nil {
		err = writeUpper(ctx, w, shadow, opts, upperFormat{markerFiles: true}, m.inv.lower)
	}
	if rerr := removeTree(shadow); err == nil {
		err = rerr
	}
	if err == nil {
		err = refresh(m.rootfs, touched)
	}
	if err != nil {
		m.next = nil
		return fmt.Errorf("copy: diff: %w", err)
	}
	m.next, m.touched, m.clamp, m.empty = tree, touched, opts.Clamp, empty
	return nil
}

func isEmptyDir(p string) (bool, error) {
	ents, err := os.ReadDir(p)
	return len(ents) == 0, err
}

// Commit caches the tree under the chain extended by diffID, mtimes clamped as the last Diff wrote
// them, with the inventory the next Prepare of that chain can reuse.
func (m *copyMount) Commit(ctx context.Context, diffID digest.Digest) error {
	if m.done {
		return errors.New("copy: commit of a released snapshot")
	}
	if _, err := layerHex(diffID); err != nil {
		return err
	}
	if m.clamp != nil && m.next != nil {
		rels := make([]string, len(m.touched))
		for i, e := range m.touched {
			rels[i] = e.rel
		}
		err := clampTimes(ctx, m.rootfs, rels, *m.clamp)
		if err == nil {
			err = refresh(m.rootfs, m.touched)
		}
		if err != nil {
			return fmt.Errorf("copy: commit: %w", err)
		}
	}
	chain := chainIDs(append(slices.Clone(m.ids), diffID))
	if err := m.d.put(m.rootfs, chain[len(chain)-1], m.next); err != nil {
		return fmt.Errorf("copy: commit: %w", err)
	}
	return m.Release()
}

// Release discards the tree, unless the last Diff found no change (a step that adds no layer):
// then, if a second comparison agrees, the tree goes back to the cache under its own chain, so the
// next step does not extract the layers again.
func (m *copyMount) Release() error {
	if m.done {
		return nil
	}
	if m.empty && len(m.ids) > 0 {
		m.empty = false
		if err := m.keepUnchanged(); err != nil {
			m.d.log.Debug("copy: unchanged tree not cached", "err", err)
		}
	}
	if err := removeTree(m.dir.path); err != nil {
		return fmt.Errorf("copy: release: %w", err)
	}
	m.dir.unlock()
	m.done = true
	m.d.mu.Lock()
	delete(m.d.active, m)
	m.d.mu.Unlock()
	return nil
}

func (m *copyMount) keepUnchanged() error {
	shadow := filepath.Join(m.dir.path, "shadow")
	if err := os.Mkdir(shadow, 0o755); err != nil {
		return err
	}
	tree, _, err := diffTree(context.Background(), m.rootfs, m.inv, shadow)
	empty := false
	if err == nil {
		empty, err = isEmptyDir(shadow)
	}
	if err != nil || !empty {
		return err // changed since Diff: discard
	}
	chain := chainIDs(m.ids)
	return m.d.put(m.rootfs, chain[len(chain)-1], tree)
}
