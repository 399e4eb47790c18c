package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// CopyTree copies the tree under src into dst (created if missing; existing entries are replaced,
// existing directories merged), preserving modes, ownership (per opts' NoChown, IgnoreChownErrors and
// MapOwner), xattrs, symlinks, hard links, device nodes (per SkipDevices), fifos and times. Sockets
// are skipped. File data is reflinked where the filesystem allows, else copied in the kernel. dst's
// own metadata becomes src's, last, so its mtime survives the copy.
func CopyTree(ctx context.Context, src, dst string, opts ApplyOptions) error {
	sfd, err := unix.Open(src, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("copy tree: open %s: %w", src, err)
	}
	defer unix.Close(sfd)
	var sst unix.Stat_t
	if err := unix.Fstat(sfd, &sst); err != nil {
		return fmt.Errorf("copy tree: %s: %w", src, err)
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return fmt.Errorf("copy tree: create %s: %w", dst, err)
	}
	ir, err := openInRoot(dst)
	if err != nil {
		return fmt.Errorf("copy tree: open %s: %w", dst, err)
	}
	defer ir.Close()
	dfd, err := unix.Open(dst, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("copy tree: open %s: %w", dst, err)
	}
	defer unix.Close(dfd)
	c := newCopier(ctx, ir, opts)
	if err := c.copyDir(sfd, dfd, ""); err != nil {
		return fmt.Errorf("copy tree %s to %s: %w", src, dst, err)
	}
	if err := c.finishDir(sfd, dfd, &sst); err != nil {
		return fmt.Errorf("copy tree %s to %s: %w", src, dst, err)
	}
	return nil
}

// copier copies entries between descriptor-addressed directories; dst resolves hard link targets
// inside the destination root.
type copier struct {
	ctx   context.Context
	dst   *inRoot
	opts  ApplyOptions
	set   setter
	links map[devIno]string // first destination path of each multiply linked source file
}

func newCopier(ctx context.Context, dst *inRoot, opts ApplyOptions) *copier {
	c := &copier{ctx: ctx, dst: dst, opts: opts, links: map[devIno]string{}}
	c.set = setter{&c.opts}
	return c
}

func (c *copier) copyDir(sfd, dfd int, rel string) error {
	names, err := readDirNames(sfd)
	if err != nil {
		return fmt.Errorf("read %s: %w", displayName(rel), err)
	}
	slices.Sort(names) // stable choice of the first path of hard links
	for _, name := range names {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		st, err := lstatAt(sfd, name)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		crel := joinName(rel, name)
		if err == nil {
			err = c.copyEntry(sfd, dfd, name, crel, &st)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", crel, err)
		}
	}
	return nil
}

func (c *copier) attrs(st *unix.Stat_t) *attrs {
	at := &attrs{mode: st.Mode & 0o7777, times: [2]unix.Timespec{st.Atim, st.Mtim}}
	at.uid, at.gid = c.set.owner(int(st.Uid), int(st.Gid))
	return at
}

// clear removes what is at name in the destination unless it is a directory and keepDir.
func (c *copier) clear(dfd int, name string, keepDir bool) (kept bool, err error) {
	st, err := lstatAt(dfd, name)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if keepDir && isDir(&st) {
		return true, nil
	}
	if isDir(&st) || isLink(&st) {
		c.dst.invalidate()
	}
	return false, removeAllAt(dfd, name)
}

// copyEntry copies one source entry (already lstat'ed) to the same name under dfd.
func (c *copier) copyEntry(sfd, dfd int, name, rel string, st *unix.Stat_t) error {
	c.dst.sweep()
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFSOCK:
		return nil
	case unix.S_IFDIR:
		kept, err := c.clear(dfd, name, true)
		if err != nil {
			return err
		}
		if !kept {
			if err := unix.Mkdirat(dfd, name, 0o700); err != nil {
				return fmt.Errorf("mkdir: %w", err)
			}
		}
		cs, err := openDirAt(sfd, name)
		if err != nil {
			return err
		}
		defer unix.Close(cs)
		cd, err := openDirAt(dfd, name)
		if err != nil {
			return err
		}
		defer unix.Close(cd)
		if err := c.copyDir(cs, cd, rel); err != nil {
			return err
		}
		return c.finishDir(cs, cd, st)
	}
	if _, err := c.clear(dfd, name, false); err != nil {
		return err
	}
	at := c.attrs(st)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		// Look up even at nlink 1: Merge's fallback removes each source right after copying it.
		key := devIno{st.Dev, st.Ino}
		if first, ok := c.links[key]; ok {
			tdir, tbase := splitName(first)
			tfd, err := c.dst.dir(tdir, false)
			if err == nil {
				err = unix.Linkat(tfd, tbase, dfd, name, 0)
			}
			if err != nil {
				return fmt.Errorf("hard link to %s: %w", first, err)
			}
			return nil
		}
		if st.Nlink > 1 {
			c.links[key] = rel
		}
		sf, err := openAt(sfd, name, unix.O_RDONLY, 0)
		if err != nil {
			return err
		}
		defer unix.Close(sf)
		if at.xattrs, err = readXattrs(sf, keepXattrInCopy); err != nil {
			return err
		}
		return c.set.createFile(dfd, name, at, nil, func(fd int) error { return copyData(fd, sf, st.Size) })
	case unix.S_IFLNK:
		target, err := readlinkAt(sfd, name)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(target, dfd, name); err != nil {
			return fmt.Errorf("symlink: %w", err)
		}
		return c.set.applyAt(dfd, name, at, true)
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
		skipped, err := c.set.mknod(dfd, name, st.Mode&unix.S_IFMT|0o600, st.Rdev)
		if err != nil || skipped {
			return err
		}
		return c.set.applyAt(dfd, name, at, false)
	}
	return fmt.Errorf("unsupported file type %#o", st.Mode&unix.S_IFMT)
}

// finishDir gives a copied directory its source's metadata, after its contents (which move its mtime).
func (c *copier) finishDir(sfd, dfd int, st *unix.Stat_t) error {
	at := c.attrs(st)
	var err error
	if at.xattrs, err = readXattrs(sfd, keepXattrInCopy); err != nil {
		return err
	}
	return c.set.applyFd(dfd, at, true)
}

// Merge moves the contents of upper (a plain tree, no whiteouts) onto root. Files, symlinks and other
// non-directories replace what is at their path (rename; a copy across filesystems); a directory
// replaces a non-directory, merges into a directory and then takes upper's owner, mode and times.
// A symlink in root that resolves (inside root) to a directory is merged through, as a container
// writing there would, and keeps its target's metadata; paths never resolve outside root. Moved
// entries leave upper, merged directories are removed from it: upper ends empty. upper's own
// metadata is not applied to root.
func Merge(ctx context.Context, upper, root string) error {
	ir, err := openInRoot(root)
	if err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	defer ir.Close()
	ufd, err := unix.Open(upper, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	defer unix.Close(ufd)
	m := &merger{ctx: ctx, ir: ir, cp: newCopier(ctx, ir, ApplyOptions{})}
	if err := m.merge(ufd, ir.fd, ""); err != nil {
		return fmt.Errorf("merge %s into %s: %w", upper, root, err)
	}
	return nil
}

type merger struct {
	ctx context.Context
	ir  *inRoot
	cp  *copier
}

func (m *merger) merge(ufd, rfd int, rel string) error {
	names, err := readDirNames(ufd)
	if err != nil {
		return fmt.Errorf("read %s: %w", displayName(rel), err)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := m.ctx.Err(); err != nil {
			return err
		}
		crel := joinName(rel, name)
		if err := m.entry(ufd, rfd, name, crel); err != nil {
			return fmt.Errorf("%s: %w", crel, err)
		}
	}
	return nil
}

func (m *merger) entry(ufd, rfd int, name, rel string) error {
	m.ir.sweep()
	ust, err := lstatAt(ufd, name)
	if err != nil {
		return err
	}
	rst, err := lstatAt(rfd, name)
	exists := err == nil
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	if isDir(&ust) && exists {
		into, takeMeta := -1, false
		if isDir(&rst) {
			if into, err = openDirAt(rfd, name); err != nil {
				return err
			}
			takeMeta = true
		} else if isLink(&rst) {
			if fd, err := m.ir.open(rel, unix.O_RDONLY|unix.O_DIRECTORY); err == nil {
				into = fd
			}
		}
		if into >= 0 {
			defer unix.Close(into)
			return m.mergeDir(ufd, into, name, rel, &ust, takeMeta)
		}
	}
	if exists && (isDir(&rst) || isDir(&ust)) {
		// rename cannot put a directory over a file or replace a non-empty directory.
		if isDir(&rst) || isLink(&rst) {
			m.ir.invalidate()
		}
		if err := removeAllAt(rfd, name); err != nil {
			return fmt.Errorf("replace existing: %w", err)
		}
	} else if exists && isLink(&rst) {
		m.ir.invalidate()
	}
	err = unix.Renameat(ufd, name, rfd, name)
	if !errors.Is(err, unix.EXDEV) {
		return err
	}
	if err := m.cp.copyEntry(ufd, rfd, name, rel, &ust); err != nil {
		return err
	}
	return removeAllAt(ufd, name)
}

func (m *merger) mergeDir(ufd, into int, name, rel string, ust *unix.Stat_t, takeMeta bool) error {
	cu, err := openDirAt(ufd, name)
	if err != nil {
		return err
	}
	err = m.merge(cu, into, rel)
	unix.Close(cu)
	if err != nil {
		return err
	}
	if takeMeta {
		at := m.cp.attrs(ust)
		if err := m.cp.set.applyFd(into, at, true); err != nil {
			return err
		}
	}
	return unix.Unlinkat(ufd, name, unix.AT_REMOVEDIR)
}
