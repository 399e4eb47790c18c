package snapshot

import (
	"errors"
	"fmt"
	"os"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// inRoot resolves directories inside a root the way a chroot would: symlinks in the path are followed,
// but "/" and ".." stop at the root. It uses openat2(RESOLVE_IN_ROOT) when the kernel has it (5.6+) and
// filepath-securejoin's emulation otherwise. Resolved directory descriptors are cached, since layer
// entries arrive grouped by directory.
type inRoot struct {
	file       *os.File // keeps the root descriptor alive for the securejoin fallback
	fd         int
	hasOpenat2 bool
	cache      map[string]int // clean relative dir -> O_PATH descriptor
	stale      []int          // descriptors invalidated during the current entry, closed at the next one
	// newDir, when set, runs on each directory mkdirAll creates, before its mode is fixed.
	newDir func(dirfd int, name string) error
}

const inRootCacheMax = 128

func openInRoot(root string) (*inRoot, error) {
	f, err := os.OpenFile(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	r := &inRoot{file: f, fd: int(f.Fd()), cache: map[string]int{}}
	// Probe once: ENOSYS on old kernels, EPERM under some seccomp profiles.
	if fd, err := r.openat2(".", unix.O_PATH|unix.O_DIRECTORY); err == nil {
		unix.Close(fd)
		r.hasOpenat2 = true
	}
	return r, nil
}

func (r *inRoot) Close() {
	r.invalidate()
	r.sweep()
	r.file.Close()
}

func (r *inRoot) openat2(rel string, flags uint64) (int, error) {
	how := unix.OpenHow{
		Flags:   flags | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(r.fd, rel, &how)
		if err == unix.EINTR || err == unix.EAGAIN { // EAGAIN: a rename raced the lookup
			continue
		}
		return fd, err
	}
}

// open resolves rel in the root, following a final symlink too, and returns a new descriptor
// opened with flags (O_PATH or O_RDONLY, with O_DIRECTORY when a directory is required).
func (r *inRoot) open(rel string, flags int) (int, error) {
	if rel == "" {
		rel = "."
	}
	if r.hasOpenat2 {
		return r.openat2(rel, uint64(flags))
	}
	f, err := pathrs.OpenatInRoot(r.file, rel)
	if err != nil {
		return -1, err
	}
	defer f.Close()
	if flags&unix.O_PATH != 0 {
		if flags&unix.O_DIRECTORY != 0 {
			var st unix.Stat_t
			if err := unix.Fstat(int(f.Fd()), &st); err != nil {
				return -1, err
			}
			if !isDir(&st) {
				return -1, unix.ENOTDIR
			}
		}
		return unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	}
	g, err := pathrs.Reopen(f, flags)
	if err != nil {
		return -1, err
	}
	defer g.Close()
	return unix.FcntlInt(g.Fd(), unix.F_DUPFD_CLOEXEC, 0)
}

// dir returns a cached O_PATH descriptor of directory rel, creating missing components (mode 0755)
// when create is set. The descriptor stays valid until the next sweep; callers never close it.
func (r *inRoot) dir(rel string, create bool) (int, error) {
	if rel == "" {
		return r.fd, nil
	}
	if fd, ok := r.cache[rel]; ok {
		return fd, nil
	}
	fd, err := r.open(rel, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil && create && errors.Is(err, unix.ENOENT) {
		fd, err = r.mkdirAll(rel)
	}
	if err != nil {
		return -1, err
	}
	r.cache[rel] = fd
	return fd, nil
}

// mkdirAll creates the missing components of rel one by one. Each existing prefix is resolved in the
// root again, so a symlinked component leads where it would inside the container, never outside.
func (r *inRoot) mkdirAll(rel string) (int, error) {
	parent, prefix := r.fd, ""
	closeParent := func() {
		if parent != r.fd {
			unix.Close(parent)
		}
	}
	for part := range strings.SplitSeq(rel, "/") {
		prefix = joinName(prefix, part)
		fd, err := r.open(prefix, unix.O_PATH|unix.O_DIRECTORY)
		if errors.Is(err, unix.ENOENT) {
			err = retry(func() error { return unix.Mkdirat(parent, part, 0o755) })
			if err == nil && r.newDir != nil {
				err = r.newDir(parent, part)
			}
			if err == nil {
				// Not subject to the umask: implicit parents look the same on every host.
				err = unix.Fchmodat(parent, part, 0o755, 0)
			}
			if err != nil && !errors.Is(err, unix.EEXIST) {
				closeParent()
				return -1, fmt.Errorf("create parent %s: %w", prefix, err)
			}
			fd, err = r.open(prefix, unix.O_PATH|unix.O_DIRECTORY)
		}
		closeParent()
		if err != nil {
			return -1, fmt.Errorf("parent %s: %w", prefix, err)
		}
		parent = fd
	}
	return parent, nil
}

// invalidate forgets cached directories; call it whenever a directory or symlink is removed or
// replaced, since that can change what a cached path resolves to. The descriptors stay open until
// sweep, because the caller may still be using one of them for the current entry.
func (r *inRoot) invalidate() {
	for k, fd := range r.cache {
		r.stale = append(r.stale, fd)
		delete(r.cache, k)
	}
}

// sweep closes invalidated descriptors and bounds the cache; call it between entries.
func (r *inRoot) sweep() {
	if len(r.cache) > inRootCacheMax {
		r.invalidate()
	}
	for _, fd := range r.stale {
		unix.Close(fd)
	}
	r.stale = r.stale[:0]
}
