package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The rootfs is a snapshot whose every change becomes part of a layer, so
// the mountpoints a RUN needs and the image lacks are made here before the
// RUN and taken away after it. Removal only touches what was made here,
// only while it is still empty, and walks the tree without following
// symlinks: by then the RUN may have planted some.

// made is one file or directory created in the rootfs.
type made struct {
	rel   string // slash path relative to the rootfs, without symlinks
	dir   bool
	owned bool // a file whose content we wrote: removed even when not empty
}

// dirTimes remembers a parent directory's mtime before and after we added
// to it, so it can be put back when the RUN itself did not change it.
type dirTimes struct {
	rel           string
	before, after unix.Timespec
	restore       bool // the RUN left it alone
}

// rootfsChanges records what Run made in a rootfs.
type rootfsChanges struct {
	root    string
	made    []made
	parents []*dirTimes
	swapped []swappedLink
}

// swappedLink is a symlink the image has where the sandbox mounts a
// filesystem of its own (/dev, /proc, /sys): it is replaced by an empty
// directory for the RUN and put back after, so nothing is mounted, made
// or written through it, inside the rootfs or out of it (the runc
// CVE-2025-31133 class).
type swappedLink struct {
	name, target string
	st           unix.Stat_t
}

// systemMount reports the top-level destinations the sandbox fills itself.
func systemMount(dest string) bool {
	return dest == "/dev" || dest == "/proc" || dest == "/sys"
}

// mountpoint is a destination Run must provide.
type mountpoint struct {
	dest    string // path inside the rootfs
	dir     bool
	content []byte // non-nil: create the file with this content (chroot fallback)
}

// rootMountpoints lists the destinations of spec's mounts that lie on the
// rootfs itself; a mount inside an earlier one (e.g. /dev/pts in the /dev
// tmpfs) gets its mountpoint from the child, in that filesystem.
func rootMountpoints(mounts []specs.Mount) ([]mountpoint, error) {
	var out []mountpoint
	var seen []string
	for _, m := range mounts {
		d := path.Clean("/" + m.Destination)
		if d == "/" {
			return nil, fmt.Errorf("mount over the whole rootfs (%s) is not supported", m.Destination)
		}
		covered := false
		for _, e := range seen {
			covered = covered || under(d, e)
		}
		seen = append(seen, d)
		if covered {
			continue
		}
		dir := true
		if isBind(m) {
			fi, err := os.Stat(m.Source)
			if err != nil {
				return nil, fmt.Errorf("mount source for %s: %w", m.Destination, err)
			}
			dir = fi.IsDir()
		}
		out = append(out, mountpoint{dest: d, dir: dir})
	}
	return out, nil
}

// under reports whether p is dir or inside it (both clean and absolute).
func under(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// prepare makes each missing mountpoint (and missing parents) in root.
func prepare(root string, mps []mountpoint) (*rootfsChanges, error) {
	c := &rootfsChanges{root: root}
	for _, mp := range mps {
		if err := c.ensure(mp); err != nil {
			c.cleanup()
			return nil, fmt.Errorf("creating mountpoint %s: %w", mp.dest, err)
		}
	}
	return c, nil
}

func (c *rootfsChanges) ensure(mp mountpoint) error {
	if systemMount(mp.dest) {
		if err := c.swapLink(mp.dest[1:]); err != nil {
			return err
		}
	}
	full, err := securejoin.SecureJoin(c.root, mp.dest)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(c.root, full)
	if err != nil || rel == "." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("resolves outside the rootfs")
	}
	parts := strings.Split(filepath.ToSlash(rel), "/")
	for i := range parts {
		cur := strings.Join(parts[:i+1], "/")
		last := i == len(parts)-1
		parent, name, err := openParent(c.root, cur)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		err = unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil {
			unix.Close(parent)
			if !last && st.Mode&unix.S_IFMT != unix.S_IFDIR {
				return fmt.Errorf("%s is not a directory", cur)
			}
			continue
		}
		if !errors.Is(err, unix.ENOENT) {
			unix.Close(parent)
			return err
		}
		err = c.create(parent, path.Dir("/" + cur)[1:], name, cur, !last || mp.dir, mp.content)
		unix.Close(parent)
		if err != nil {
			return err
		}
	}
	return nil
}

// create makes name in the directory parent (parentRel) and records it.
func (c *rootfsChanges) create(parent int, parentRel, name, rel string, dir bool, content []byte) error {
	var before unix.Stat_t
	if err := unix.Fstat(parent, &before); err != nil {
		return err
	}
	if dir {
		if err := unix.Mkdirat(parent, name, 0o755); err != nil {
			return err
		}
	} else {
		fd, err := unix.Openat(parent, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), name)
		_, err = f.Write(content)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			unix.Unlinkat(parent, name, 0)
			return err
		}
	}
	c.made = append(c.made, made{rel: rel, dir: dir, owned: content != nil})
	var after unix.Stat_t
	if err := unix.Fstat(parent, &after); err == nil {
		if p := c.parent(parentRel); p != nil {
			p.after = after.Mtim
		} else {
			c.parents = append(c.parents, &dirTimes{rel: parentRel, before: before.Mtim, after: after.Mtim})
		}
	}
	return nil
}

// swapLink replaces the top-level entry name by an empty directory if it
// is a symlink, and records how to put the link back.
func (c *rootfsChanges) swapLink(name string) error {
	rootfd, err := unix.Open(c.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(rootfd)
	var st unix.Stat_t
	if err := unix.Fstatat(rootfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return nil // absent (made below) or not a link
	}
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(rootfd, name, buf)
	if err != nil {
		return err
	}
	var before unix.Stat_t
	if err := unix.Fstat(rootfd, &before); err != nil {
		return err
	}
	if err := unix.Unlinkat(rootfd, name, 0); err != nil {
		return err
	}
	if err := unix.Mkdirat(rootfd, name, 0o755); err != nil {
		return err
	}
	c.swapped = append(c.swapped, swappedLink{name: name, target: string(buf[:n]), st: st})
	var after unix.Stat_t
	if err := unix.Fstat(rootfd, &after); err == nil && c.parent("") == nil {
		c.parents = append(c.parents, &dirTimes{rel: "", before: before.Mtim, after: after.Mtim})
	}
	return nil
}

// restoreLinks puts back the symlinks swapLink replaced, with their owner
// and times, once the directory standing in for each is empty again.
func (c *rootfsChanges) restoreLinks() (left []string, err error) {
	var errs []error
	for i := len(c.swapped) - 1; i >= 0; i-- {
		l := c.swapped[i]
		if e := unix.Unlinkat(unix.AT_FDCWD, filepath.Join(c.root, l.name), unix.AT_REMOVEDIR); e != nil {
			left = append(left, l.name) // the RUN filled it: its content stays
			continue
		}
		p := filepath.Join(c.root, l.name)
		if e := unix.Symlinkat(l.target, unix.AT_FDCWD, p); e != nil {
			errs = append(errs, fmt.Errorf("restoring the symlink %s: %w", l.name, e))
			continue
		}
		_ = unix.Fchownat(unix.AT_FDCWD, p, int(l.st.Uid), int(l.st.Gid), unix.AT_SYMLINK_NOFOLLOW)
		_ = unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{l.st.Atim, l.st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
	}
	c.swapped = nil
	return left, errors.Join(errs...)
}

func (c *rootfsChanges) parent(rel string) *dirTimes {
	for _, p := range c.parents {
		if p.rel == rel {
			return p
		}
	}
	return nil
}

// cleanup removes, newest first, what prepare made and what is still as it
// left it, then restores parent mtimes the RUN did not change. It returns
// the paths it had to leave, and an error for unexpected failures.
func (c *rootfsChanges) cleanup() (left []string, err error) {
	if c == nil {
		return nil, nil
	}
	var errs []error
	for _, p := range c.parents {
		p.restore = c.mtimeIs(p.rel, p.after)
	}
	for i := len(c.made) - 1; i >= 0; i-- {
		m := c.made[i]
		parent, name, oerr := openParent(c.root, m.rel)
		if oerr != nil {
			left = append(left, m.rel) // the RUN replaced a parent: not ours any more
			continue
		}
		var st unix.Stat_t
		serr := unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case errors.Is(serr, unix.ENOENT):
		case serr != nil:
			errs = append(errs, fmt.Errorf("%s: %w", m.rel, serr))
		case m.dir && st.Mode&unix.S_IFMT == unix.S_IFDIR:
			if e := unix.Unlinkat(parent, name, unix.AT_REMOVEDIR); e != nil {
				if !errors.Is(e, unix.ENOTEMPTY) && !errors.Is(e, unix.EEXIST) {
					errs = append(errs, fmt.Errorf("removing %s: %w", m.rel, e))
				}
				left = append(left, m.rel)
			}
		case !m.dir && st.Mode&unix.S_IFMT == unix.S_IFREG && (st.Size == 0 || m.owned):
			if e := unix.Unlinkat(parent, name, 0); e != nil {
				errs = append(errs, fmt.Errorf("removing %s: %w", m.rel, e))
				left = append(left, m.rel)
			}
		default:
			left = append(left, m.rel)
		}
		unix.Close(parent)
	}
	kept, rerr := c.restoreLinks()
	left, errs = append(left, kept...), append(errs, rerr)
	for i := len(c.parents) - 1; i >= 0; i-- {
		if c.parents[i].restore {
			c.setMtime(c.parents[i].rel, c.parents[i].before)
		}
	}
	c.made, c.parents = nil, nil
	return left, errors.Join(errs...)
}

// at opens the parent of rel (the root itself for "") for an *at call.
func (c *rootfsChanges) at(rel string) (dirfd int, name string, done func(), err error) {
	if rel == "" {
		return unix.AT_FDCWD, c.root, func() {}, nil
	}
	parent, base, err := openParent(c.root, rel)
	if err != nil {
		return -1, "", nil, err
	}
	return parent, base, func() { unix.Close(parent) }, nil
}

// mtimeIs reports whether directory rel still has mtime t.
func (c *rootfsChanges) mtimeIs(rel string, t unix.Timespec) bool {
	dirfd, name, done, err := c.at(rel)
	if err != nil {
		return false
	}
	defer done()
	var st unix.Stat_t
	return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil &&
		st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Mtim == t
}

// setMtime puts back a directory's mtime, leaving its atime.
func (c *rootfsChanges) setMtime(rel string, t unix.Timespec) {
	dirfd, name, done, err := c.at(rel)
	if err != nil {
		return
	}
	defer done()
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, t}
	_ = unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// openParent opens the directory holding rel (a slash path relative to
// root) without following any symlink on the way, and returns its fd and
// rel's last element.
func openParent(root, rel string) (int, string, error) {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", err
	}
	parts := strings.Split(rel, "/")
	for _, p := range parts[:len(parts)-1] {
		if p == "" || p == "." || p == ".." {
			unix.Close(fd)
			return -1, "", fmt.Errorf("bad path %q", rel)
		}
		next, err := unix.Openat(fd, p, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1, "", err
		}
		fd = next
	}
	return fd, parts[len(parts)-1], nil
}
