package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage/pkg/ioutils"
	"golang.org/x/sys/unix"
)

// overlayDriver serves both kernel overlayfs and fuse-overlayfs: the same layer store, the same
// <root>/mounts/<id>/{upper,work,merged} layout; only mounting and reading the upper dir differ.
type overlayDriver struct {
	name      string
	store     *layerStore
	mounts    string // <root>/mounts: one flocked directory per live mount
	empty     string // <root>/empty: the lower of an empty stack
	prefix    string // overlay xattr namespace of this process
	userxattr bool
	// noVolatile: the kernel refused the "volatile" option once.
	noVolatile atomic.Bool
	fuseBin    string // fuse-overlayfs binary; "" for the kernel
	log        *slog.Logger

	mu     sync.Mutex
	active map[*overlayMount]struct{} // for Close

	gives giveLock // layer paths in use against trees given away
}

var _ Driver = (*overlayDriver)(nil)

// NewOverlay returns the kernel overlayfs driver rooted at root (created if missing). Layers live
// in <root>/layers, mounts in <root>/mounts. It mounts a throw-away overlay first and fails with
// the reason when overlayfs cannot be used here (Linux ≥ 5.11 in a user namespace, or real root).
func NewOverlay(root string, o Options) (Driver, error) {
	return newOverlay(root, "", o)
}

// NewFuseOverlay returns the fuse-overlayfs driver; binary "" looks fuse-overlayfs up in PATH. It
// shares the layer store format with NewOverlay, so either can use a root the other filled. o is
// at most one Options.
func NewFuseOverlay(root, binary string, o ...Options) (Driver, error) {
	if binary == "" {
		binary = "fuse-overlayfs"
	}
	bin, err := lookPath(binary)
	if err != nil {
		return nil, fmt.Errorf("fuse-overlayfs: %w", err)
	}
	return newOverlay(root, bin, oneOptions(o))
}

func newOverlay(root, fuseBin string, o Options) (*overlayDriver, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	// Mount options separate paths with ':' and options with ','; the kernel also unescapes '\'.
	if strings.ContainsAny(root, ",:\\") {
		return nil, fmt.Errorf("overlay snapshot root %q: ',', ':' and '\\' cannot appear in overlay mount options", root)
	}
	d := &overlayDriver{name: "overlay", mounts: filepath.Join(root, "mounts"),
		empty: filepath.Join(root, "empty"), fuseBin: fuseBin, log: o.logger(), active: map[*overlayMount]struct{}{}}
	if fuseBin != "" {
		d.name = "fuse-overlayfs"
	}
	d.prefix, d.userxattr = overlayPrefix()
	if d.store, err = openLayerStore(root, d.prefix, o.extract(), d.log); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(d.mounts, 0o700); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(d.empty, 0o755); err != nil {
		return nil, err
	}
	sweepStale(d.mounts, "", func(p string) { d.unmount(filepath.Join(p, "merged"), true) }, d.log)
	// A probe mounts and inspects a scratch overlay; its success is kept per
	// kernel, xattr namespace and driver (as containers/storage caches its
	// own checks), so a build that needs no snapshot costs no mount.
	probed := filepath.Join(root, ".probed-"+d.name+"-"+strings.TrimSuffix(d.prefix, ".")+"-"+kernelRelease())
	if _, err := os.Stat(probed); err != nil {
		seen := probedFS(root, d.name, d.prefix)
		if !seen.known() {
			if err := d.probe(); err != nil {
				return nil, fmt.Errorf("%s: %w", d.name, err)
			}
			seen.record()
		}
		os.WriteFile(probed, nil, 0o600)
	}
	return d, nil
}

// fsProbe is a probe's success kept for the whole file system the snapshot
// root is on, for this boot, in the user's runtime directory: a new store
// there (a CI runner's fresh store, every cold build of the bench) mounted
// and inspected a scratch overlay again, ~5-20 ms before its first step,
// where nothing but a remount of that file system could change the answer.
type fsProbe struct{ path, key string }

func probedFS(root, name, prefix string) fsProbe {
	dir := os.Getenv("XDG_RUNTIME_DIR")
	var st unix.Stat_t
	var fs unix.Statfs_t
	if dir == "" || unix.Stat(root, &st) != nil || unix.Statfs(root, &fs) != nil {
		return fsProbe{}
	}
	uidMap, _ := os.ReadFile("/proc/self/uid_map")
	key := fmt.Sprintf("%s %s dev=%d fs=%x kernel=%s boot=%s uids=%q", name, prefix, st.Dev, fs.Type, kernelRelease(), bootID(), strings.Join(strings.Fields(string(uidMap)), " "))
	h := sha256.Sum256([]byte(key))
	return fsProbe{path: filepath.Join(dir, "builder", "snapshot-probes", hex.EncodeToString(h[:12])), key: key}
}

// known reports a probe recorded for the same file system, kernel, boot
// and user namespace.
func (p fsProbe) known() bool {
	if p.path == "" {
		return false
	}
	b, err := os.ReadFile(p.path)
	return err == nil && string(b) == p.key
}

func (p fsProbe) record() {
	if p.path == "" || os.MkdirAll(filepath.Dir(p.path), 0o700) != nil {
		return
	}
	ioutils.AtomicWriteFileWithOpts(p.path, []byte(p.key), 0o600, &ioutils.AtomicFileWriterOptions{NoSync: true})
}

func (d *overlayDriver) Name() string { return d.name }

// Close releases the mounts still prepared by this driver (the caller's Release is the norm).
func (d *overlayDriver) Close() error {
	return releaseActive(&d.mu, d.active)
}

var _ Extractor = (*overlayDriver)(nil)

func (d *overlayDriver) Extract(ctx context.Context, layers []Layer) error {
	_, err := d.lowers(ctx, layers)
	return err
}

// lowers returns the layer dirs top first, as lowerdir wants them. A layer repeated in the stack
// appears once, at its topmost place: overlayfs refuses a lowerdir twice, and the upper copy of a
// layer covers everything its lower copy shows (entries, whiteouts, opaque directories).
func (d *overlayDriver) lowers(ctx context.Context, layers []Layer) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for i := len(layers) - 1; i >= 0; i-- {
		p, err := d.store.get(ctx, layers[i])
		if err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

func (d *overlayDriver) Prepare(ctx context.Context, layers []Layer) (Mount, error) {
	// Extracted before the use of their paths begins (a give waits for
	// uses, an extraction can take long); an error is the lookup's below.
	d.Extract(ctx, layers)
	defer d.gives.use()()
	lowers, err := d.lowers(ctx, layers)
	if err != nil {
		return nil, err
	}
	md, err := newLockedDir(d.mounts, "")
	if err != nil {
		return nil, err
	}
	m := &overlayMount{d: d, dir: md, upper: filepath.Join(md.path, "upper"), work: filepath.Join(md.path, "work"),
		merged: filepath.Join(md.path, "merged"), lowers: lowers}
	err = os.Mkdir(m.upper, 0o755)
	if err == nil {
		err = os.Chmod(m.upper, 0o755) // the merged root takes the upper root's mode: not the umask's
	}
	if err == nil {
		err = os.Mkdir(m.work, 0o700)
	}
	if err == nil {
		err = os.Mkdir(m.merged, 0o755)
	}
	if err == nil {
		mountLowers := lowers
		if len(mountLowers) == 0 {
			mountLowers = []string{d.empty}
		}
		err = d.mount(ctx, mountLowers, m.upper, m.work, m.merged)
	}
	if err != nil {
		removeTree(md.path)
		md.unlock()
		return nil, fmt.Errorf("%s: prepare: %w", d.name, err)
	}
	m.mounted = true
	d.mu.Lock()
	d.active[m] = struct{}{}
	d.mu.Unlock()
	return m, nil
}

var _ DirectPreparer = (*overlayDriver)(nil)

func (d *overlayDriver) PrepareDirect(ctx context.Context, layers []Layer) (Mount, string, error) {
	view, release, err := d.View(ctx, layers)
	if err != nil {
		return nil, "", err
	}
	lowers, err := d.lowers(ctx, layers) // extracted by View already: paths only
	if err != nil {
		release()
		return nil, "", err
	}
	md, err := newLockedDir(d.mounts, "")
	if err != nil {
		release()
		return nil, "", err
	}
	m := &overlayMount{d: d, dir: md, upper: filepath.Join(md.path, "upper"), work: filepath.Join(md.path, "work"),
		merged: filepath.Join(md.path, "merged"), lowers: lowers, viewRelease: release}
	err = os.Mkdir(m.upper, 0o755)
	if err == nil {
		err = os.Chmod(m.upper, 0o755) // as Prepare: the merged root takes the upper root's mode
	}
	if err != nil {
		release()
		removeTree(md.path)
		md.unlock()
		return nil, "", fmt.Errorf("%s: prepare: %w", d.name, err)
	}
	d.mu.Lock()
	d.active[m] = struct{}{}
	d.mu.Unlock()
	return m, view, nil
}

func (d *overlayDriver) View(ctx context.Context, layers []Layer) (string, func() error, error) {
	d.Extract(ctx, layers) // as Prepare: before the use
	defer d.gives.use()()
	lowers, err := d.lowers(ctx, layers)
	if err != nil {
		return "", nil, err
	}
	switch len(lowers) {
	case 0:
		return d.empty, func() error { return nil }, nil
	case 1: // overlayfs without an upper dir wants two lowers
		lowers = append(lowers, d.empty)
	}
	md, err := newLockedDir(d.mounts, "")
	if err != nil {
		return "", nil, err
	}
	merged := filepath.Join(md.path, "merged")
	err = os.Mkdir(merged, 0o755)
	if err == nil {
		err = d.mount(ctx, lowers, "", "", merged)
	}
	if err != nil {
		removeTree(md.path)
		md.unlock()
		return "", nil, fmt.Errorf("%s: view: %w", d.name, err)
	}
	var once sync.Once
	var rerr error
	release := func() error {
		once.Do(func() {
			rerr = d.unmount(merged, true)
			if rerr == nil {
				rerr = removeTree(md.path)
			}
			md.unlock()
		})
		return rerr
	}
	return merged, release, nil
}

// mount mounts an overlay at target; upper "" gives a read-only one.
func (d *overlayDriver) mount(ctx context.Context, lowers []string, upper, work, target string) error {
	if d.fuseBin != "" {
		return d.mountFuse(ctx, lowers, upper, work, target)
	}
	return d.mountKernel(lowers, upper, work, target)
}

func (d *overlayDriver) kernelOptions(lowers []string, upper, work string) string {
	var b strings.Builder
	b.WriteString("lowerdir=" + strings.Join(lowers, ":"))
	if upper != "" {
		b.WriteString(",upperdir=" + upper + ",workdir=" + work)
	}
	// Diffs read the upper dir alone, so it must hold whole files (metacopy=off) and no redirects
	// (userxattr implies redirect_dir=nofollow and refuses the option). index=off: layers move.
	if d.userxattr {
		b.WriteString(",userxattr")
	} else {
		b.WriteString(",redirect_dir=off")
	}
	b.WriteString(",index=off,metacopy=off")
	if upper != "" && !d.noVolatile.Load() {
		// volatile: unmounting an overlay otherwise syncs the whole upper filesystem (every dirty
		// page of it, not just this layer); the layer store's unsynced markers give durability.
		b.WriteString(",volatile")
	}
	return b.String()
}

func (d *overlayDriver) mountKernel(lowers []string, upper, work, target string) error {
	var flags uintptr
	if upper == "" {
		flags = unix.MS_RDONLY
	}
	opts := d.kernelOptions(lowers, upper, work)
	if len(opts) >= os.Getpagesize() {
		// Mount data is one page. Name the lowers by descriptor instead: /proc/self/fd/N resolves
		// in this process at mount time, ~20 bytes per layer instead of the full path.
		short := make([]string, len(lowers))
		for i, l := range lowers {
			fd, err := unix.Open(l, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			short[i] = "/proc/self/fd/" + strconv.Itoa(fd)
		}
		if opts = d.kernelOptions(short, upper, work); len(opts) >= os.Getpagesize() {
			return fmt.Errorf("%d layers do not fit in one overlay mount", len(lowers))
		}
	}
	err := unix.Mount("overlay", target, "overlay", flags, opts)
	if errors.Is(err, unix.EINVAL) && upper != "" && !d.noVolatile.Load() {
		d.noVolatile.Store(true) // before Linux 5.10
		return d.mountKernel(lowers, upper, work, target)
	}
	if err != nil {
		return fmt.Errorf("mount overlay (%s): %w", opts, err)
	}
	return nil
}

// unmount unmounts target if it is mounted. detach allows a lazy unmount when it stays busy; a
// commit never uses it, since a process still writing could then change the layer afterwards.
func (d *overlayDriver) unmount(target string, detach bool) error {
	var err error
	for i := 0; i < 50; i++ {
		err = unix.Unmount(target, 0)
		if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil // EINVAL: not (or no longer) a mount point
		}
		if errors.Is(err, unix.EPERM) && d.fuseBin != "" {
			return fuserUnmount(target) // an unprivileged fuse mount made through fusermount3
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if detach && errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(target, unix.MNT_DETACH)
	}
	if err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

// overlayMount is one prepared snapshot: upper/work/merged under a flocked directory.
type overlayMount struct {
	d                   *overlayDriver
	dir                 *lockedDir
	upper, work, merged string
	lowers              []string // layer dirs, top first
	mounted, done       bool
	viewRelease         func() error // PrepareDirect's view of the lowers
	clamp               *time.Time   // of the last Diff, applied to the tree on Commit
}

func (m *overlayMount) Root() string {
	if m.viewRelease != nil {
		return m.upper // written directly (PrepareDirect)
	}
	return m.merged
}

// Diff writes the upper dir as a layer tar. Only the upper dir is read, plus a lookup in the lower
// layers for each directory and whiteout in it. opts.Overlay and opts.Include are the driver's.
func (m *overlayMount) Diff(ctx context.Context, w io.Writer, opts WriteOptions) error {
	if m.done {
		return fmt.Errorf("%s: diff of a released snapshot", m.d.name)
	}
	// The kernel honours only its own namespace; fuse-overlayfs reads every marker.
	// fuse-overlayfs refuses ".wh." names itself (EINVAL), so only its own whiteouts carry them.
	f := upperFormat{opaqueXattrs: []string{m.d.prefix + "opaque"}, prune: true, refuseFiles: true}
	if m.d.fuseBin != "" {
		f = upperFormat{opaqueXattrs: opaqueXattrs, markerFiles: true, prune: true}
	}
	defer m.d.gives.use()() // the lower layers are looked up by path
	err := writeUpper(ctx, w, m.upper, opts, f, layersLower(m.lowers, f.opaqueXattrs))
	if err != nil {
		return fmt.Errorf("%s: diff: %w", m.d.name, err)
	}
	m.clamp = opts.Clamp
	return nil
}

// Commit unmounts, brings the upper dir to store format (mtimes clamped as the last Diff wrote
// them; fuse-overlayfs markers converted) and renames it into the layer store as diffID.
func (m *overlayMount) Commit(ctx context.Context, diffID digest.Digest) error {
	if m.done {
		return fmt.Errorf("%s: commit of a released snapshot", m.d.name)
	}
	if _, err := layerHex(diffID); err != nil {
		return err
	}
	if m.mounted {
		if err := m.d.unmount(m.merged, false); err != nil {
			return fmt.Errorf("%s: commit: %w", m.d.name, err)
		}
		m.mounted = false
	}
	var err error
	if m.d.fuseBin != "" {
		err = normalizeUpper(ctx, m.upper, m.d.prefix)
	}
	if err == nil && m.clamp != nil {
		err = clampTimes(ctx, m.upper, nil, *m.clamp)
	}
	if err == nil {
		err = m.d.store.adopt(m.upper, diffID)
	}
	if err != nil {
		return fmt.Errorf("%s: commit: %w", m.d.name, err)
	}
	return m.Release()
}

func (m *overlayMount) Release() error {
	if m.done {
		return nil
	}
	if m.mounted {
		if err := m.d.unmount(m.merged, true); err != nil {
			return fmt.Errorf("%s: release: %w", m.d.name, err)
		}
		m.mounted = false
	}
	if m.viewRelease != nil {
		if err := m.viewRelease(); err != nil {
			return fmt.Errorf("%s: release: %w", m.d.name, err)
		}
	}
	if err := removeTree(m.dir.path); err != nil {
		return fmt.Errorf("%s: release: %w", m.d.name, err)
	}
	m.dir.unlock()
	m.done = true
	m.d.mu.Lock()
	delete(m.d.active, m)
	m.d.mu.Unlock()
	return nil
}

// probe mounts a scratch overlay and checks that whiteouts and opaque directories come out in the
// format Diff and the layer store rely on.
// probes counts the probes run (tests).
var probes atomic.Int64

func (d *overlayDriver) probe() error {
	probes.Add(1)
	pd, err := newLockedDir(d.mounts, "")
	if err != nil {
		return err
	}
	defer pd.unlock()
	defer removeTree(pd.path)
	p := func(s ...string) string { return filepath.Join(append([]string{pd.path}, s...)...) }
	for _, dir := range []string{"lower/d", "upper", "work", "merged"} {
		if err := os.MkdirAll(p(dir), 0o755); err != nil {
			return err
		}
	}
	for _, f := range []string{"lower/f", "lower/d/g"} {
		if err := os.WriteFile(p(f), nil, 0o644); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.mount(ctx, []string{p("lower"), d.empty}, p("upper"), p("work"), p("merged")); err != nil {
		return err
	}
	err = os.Remove(p("merged/f"))
	if err == nil {
		err = os.RemoveAll(p("merged/d"))
	}
	if err == nil {
		err = os.Mkdir(p("merged/d"), 0o755)
	}
	if uerr := d.unmount(p("merged"), true); err == nil {
		err = uerr
	}
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	if d.fuseBin != "" {
		return nil // fuse-overlayfs picks its own marker formats; Diff reads them all
	}
	var st unix.Stat_t
	if err := unix.Lstat(p("upper/f"), &st); err != nil || !isWhiteoutDev(&st) {
		return fmt.Errorf("probe: no whiteout device in the upper dir (%v)", err)
	}
	if v, err := getXattrPath(p("upper/d"), d.prefix+"opaque"); err != nil || string(v) != "y" {
		return fmt.Errorf("probe: no %sopaque xattr in the upper dir (%v)", d.prefix, err)
	}
	return nil
}

func getXattrPath(path, name string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return getXattr(fd, name)
}

// kernelRelease is uname -r ("unknown" when it cannot be read).
func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}
