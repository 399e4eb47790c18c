package snapshot

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Options tune every driver. The zero value suits the current process.
type Options struct {
	// Extract governs how layers are extracted (ownership, devices, xattr errors); NoWhiteouts is
	// ignored. nil: as real root, everything is kept; in a user namespace, chown failures (ids not
	// mapped) and device nodes are tolerated; unprivileged, ownership is left to the process.
	Extract *ApplyOptions
	// CacheSize is how many materialized root filesystems the copy driver keeps on disk (default 3).
	CacheSize int
	// Log receives the driver choice and cleanup notes (nil: discarded).
	Log *slog.Logger
}

func (o Options) extract() ApplyOptions {
	if o.Extract != nil {
		e := *o.Extract
		e.NoWhiteouts = false
		return e
	}
	switch {
	case os.Geteuid() != 0:
		return ApplyOptions{NoChown: true, IgnoreXattrErrors: true, SkipDevices: true}
	case inUserNS():
		return ApplyOptions{IgnoreChownErrors: true, IgnoreXattrErrors: true, SkipDevices: true}
	}
	return ApplyOptions{IgnoreXattrErrors: true}
}

func (o Options) logger() *slog.Logger {
	if o.Log != nil {
		return o.Log
	}
	return slog.New(slog.DiscardHandler)
}

// inUserNS reports whether this process runs in a user namespace other than the initial one, where
// trusted.* xattrs are out of reach and overlayfs needs "userxattr".
func inUserNS() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) != 3 || f[0] != "0" || f[1] != "0" || f[2] != "4294967295"
}

// overlayPrefix is the xattr namespace overlayfs uses for this process: user.overlay. with
// userxattr (in a user namespace, or unprivileged), trusted.overlay. as real root.
func overlayPrefix() (prefix string, userxattr bool) {
	if os.Geteuid() == 0 && !inUserNS() {
		return "trusted.overlay.", false
	}
	return "user.overlay.", true
}

func randomID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b[:])
}

// layerHex validates a diffID and returns the name its layer directory gets.
func layerHex(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("layer %q: %w", d, err)
	}
	if d.Algorithm() != digest.SHA256 {
		return "", fmt.Errorf("layer %s: only sha256 diffIDs are supported", d)
	}
	return d.Encoded(), nil
}

// chainIDs returns the OCI ChainID of every prefix of diffIDs (hex): ChainID(L0) = DiffID(L0),
// ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln)).
func chainIDs(diffIDs []digest.Digest) []string {
	out := make([]string, len(diffIDs))
	var prev digest.Digest
	for i, d := range diffIDs {
		if i == 0 {
			prev = d
		} else {
			sum := sha256.Sum256([]byte(string(prev) + " " + string(d)))
			prev = digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(sum[:]))
		}
		out[i] = prev.Encoded()
	}
	return out
}

func diffIDs(layers []Layer) ([]digest.Digest, error) {
	ids := make([]digest.Digest, len(layers))
	for i, l := range layers {
		if _, err := layerHex(l.DiffID); err != nil {
			return nil, err
		}
		ids[i] = l.DiffID
	}
	return ids, nil
}

// lockedDir is a scratch directory held with flock(2) while in use, so sweepStale, in this or any
// other process, removes only directories whose owner is gone (killed builds leave no debris).
type lockedDir struct {
	path string
	fd   int
}

func newLockedDir(parent, prefix string) (*lockedDir, error) {
	for range 20 {
		p := filepath.Join(parent, prefix+randomID())
		if err := os.Mkdir(p, 0o700); err != nil {
			if errors.Is(err, os.ErrExist) {
				continue
			}
			return nil, err
		}
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // swept before we could lock it
		}
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			unix.Close(fd) // a sweeper holds it and will delete it
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Nlink == 0 {
			unix.Close(fd) // swept between mkdir and flock
			continue
		}
		return &lockedDir{path: p, fd: fd}, nil
	}
	return nil, fmt.Errorf("create scratch directory in %s: too many collisions", parent)
}

// unlock drops the lock; the directory must be gone or handed over by then.
func (l *lockedDir) unlock() {
	if l.fd >= 0 {
		unix.Close(l.fd)
		l.fd = -1
	}
}

// sweepStale removes the entries of parent starting with prefix that no live process holds.
// before, if set, runs first (to unmount what a dead process left mounted).
func sweepStale(parent, prefix string, before func(path string), log *slog.Logger) {
	ents, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		p := filepath.Join(parent, e.Name())
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil {
			if before != nil {
				before(p)
			}
			if err := removeTree(p); err != nil {
				log.Warn("cannot remove stale snapshot directory", "path", p, "err", err)
			} else {
				log.Debug("removed stale snapshot directory", "path", p)
			}
		}
		unix.Close(fd)
	}
}

// flockPath takes an exclusive flock on a lock file, polling so that ctx can interrupt the wait.
// Goroutines of this process queue on an in-process lock first, so one that waits for another
// (e.g. two stages extracting the same base) wakes as soon as it is released, not at its next poll.
func flockPath(ctx context.Context, path string) (unlock func(), err error) {
	release, err := localLocks.lock(ctx, path)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		release()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	delay := time.Millisecond
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { unix.Close(fd); release() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			unix.Close(fd)
			release()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			unix.Close(fd)
			release()
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// keyedLocks are in-process exclusive locks by name, made on first use
// and dropped when no one holds or waits for them.
type keyedLocks struct {
	mu sync.Mutex
	m  map[string]*keyedLock
}

type keyedLock struct {
	held chan struct{} // full while held
	refs int           // holders and waiters
}

var localLocks = &keyedLocks{m: map[string]*keyedLock{}}

func (k *keyedLocks) lock(ctx context.Context, name string) (release func(), err error) {
	k.mu.Lock()
	l := k.m[name]
	if l == nil {
		l = &keyedLock{held: make(chan struct{}, 1)}
		k.m[name] = l
	}
	l.refs++
	k.mu.Unlock()
	drop := func() {
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, name)
		}
		k.mu.Unlock()
	}
	select {
	case l.held <- struct{}{}:
		return func() { <-l.held; drop() }, nil
	case <-ctx.Done():
		drop()
		return nil, ctx.Err()
	}
}

// removeTree deletes path and everything below it. It never crosses into another filesystem, so
// a mount left on a merged directory is reported rather than emptied, and it makes directories
// writable as needed (a RUN step may leave read-only ones behind).
func removeTree(path string) error {
	err := os.Remove(path)
	if err == nil || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	parent, base := filepath.Split(path)
	pfd, err := unix.Open(parent, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	st, err := lstatAt(pfd, base)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	if err := removeTreeAt(pfd, base, st.Dev); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

func removeTreeAt(pfd int, name string, dev uint64) error {
	st, err := lstatAt(pfd, name)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	if !isDir(&st) {
		return ignoreENOENT(unix.Unlinkat(pfd, name, 0))
	}
	if st.Dev != dev {
		return fmt.Errorf("%s is a mount point", name)
	}
	if st.Mode&0o700 != 0o700 {
		_ = unix.Fchmodat(pfd, name, 0o700, 0)
	}
	fd, err := openDirAt(pfd, name)
	if err != nil {
		return err
	}
	names, err := readDirNames(fd)
	for _, n := range names {
		if err == nil {
			err = removeTreeAt(fd, n, dev)
		}
	}
	unix.Close(fd)
	if err != nil {
		return err
	}
	return ignoreENOENT(unix.Unlinkat(pfd, name, unix.AT_REMOVEDIR))
}

func ignoreENOENT(err error) error {
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// openBeneath opens directory rel under dirfd one component at a time, never following a symlink.
func openBeneath(dirfd int, rel string) (int, error) {
	fd, err := openDirAt(dirfd, ".")
	if err != nil || rel == "" {
		return fd, err
	}
	for part := range strings.SplitSeq(rel, "/") {
		next, err := openDirAt(fd, part)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// publishDir renames a completed directory to final unless final exists, in which case the other
// writer won (same content by construction) and ours is deleted. Either way final is then usable.
func publishDir(tmp, final string) error {
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, final, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		err = unix.Rename(tmp, final) // no RENAME_NOREPLACE here: a non-empty target still fails
	}
	if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
		return removeTree(tmp)
	}
	return err
}

// syncDir flushes the filesystem holding dir, so a layer renamed into place survives a crash whole.
func syncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
}

// clampTimes sets to clamp every mtime under dir that is later than clamp, as WriteTar wrote them,
// so a committed tree matches its layer tar. Whiteouts are skipped; times are set without following.
func clampTimes(ctx context.Context, dir string, rels []string, clamp time.Time) error {
	rootfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(rootfd)
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Sec: clamp.Unix()}}
	set := func(dirfd int, name string, st *unix.Stat_t) error {
		if st.Mtim.Sec <= clamp.Unix() || isWhiteoutDev(st) {
			return nil
		}
		return unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	if rels != nil {
		for _, rel := range rels {
			if err := ctx.Err(); err != nil {
				return err
			}
			d, base := splitName(rel)
			fd, err := openBeneath(rootfd, d)
			if err != nil {
				return err
			}
			st, err := lstatAt(fd, base)
			if err == nil {
				err = set(fd, base, &st)
			}
			unix.Close(fd)
			if err != nil {
				return err
			}
		}
		return nil
	}
	var walk func(fd int) error
	walk = func(fd int) error {
		names, err := readDirNames(fd)
		if err != nil {
			return err
		}
		for _, n := range names {
			if err := ctx.Err(); err != nil {
				return err
			}
			st, err := lstatAt(fd, n)
			if err != nil {
				return err
			}
			if isDir(&st) {
				sub, err := openDirAt(fd, n)
				if err != nil {
					return err
				}
				err = walk(sub)
				unix.Close(sub)
				if err != nil {
					return err
				}
			}
			if err := set(fd, n, &st); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(rootfd)
}

// releaseActive releases every mount still in active (a driver's Close).
// The set is copied under mu first because Release removes itself from it.
func releaseActive[M interface {
	comparable
	Release() error
}](mu *sync.Mutex, active map[M]struct{}) error {
	mu.Lock()
	ms := make([]M, 0, len(active))
	for m := range active {
		ms = append(ms, m)
	}
	mu.Unlock()
	var errs []error
	for _, m := range ms {
		errs = append(errs, m.Release())
	}
	return errors.Join(errs...)
}
