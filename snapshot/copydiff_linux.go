package snapshot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// The copy driver finds changes by comparing the tree with an inventory taken at Prepare, then
// lays the changes out as the upper dir kernel overlayfs would have produced (a "shadow" tree:
// changed files hard-linked, their ancestor directories recreated with the same metadata, ".wh."
// files for deletions, ".wh..wh..opq" for replaced directories), so the one tar writer, and the
// normalizer the fuse driver uses too, give the bytes the overlay drivers give.

// fstat is what the inventory keeps of an entry. Any content, metadata, xattr or link-count change
// moves ctime (which no system call can set back), so comparing ctime catches what a digest of
// xattrs would, without reading them for every file at every Prepare.
type fstat struct {
	mode                uint32 // type and permission bits
	uid, gid            uint32
	size                int64
	ino                 uint64
	mtime, ctime, btime unix.StatxTimestamp
	hasBtime            bool
}

func statxAt(dirfd int, name string) (fstat, error) {
	var sx unix.Statx_t
	err := retry(func() error {
		return unix.Statx(dirfd, name, unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_SYNC_AS_STAT,
			unix.STATX_BASIC_STATS|unix.STATX_BTIME, &sx)
	})
	if err != nil {
		return fstat{}, err
	}
	return fstat{mode: uint32(sx.Mode), uid: sx.Uid, gid: sx.Gid, size: int64(sx.Size), ino: sx.Ino,
		mtime: sx.Mtime, ctime: sx.Ctime, btime: sx.Btime, hasBtime: sx.Mask&unix.STATX_BTIME != 0}, nil
}

func (a *fstat) typ() uint32 { return a.mode & unix.S_IFMT }

func (a *fstat) same(b *fstat) bool {
	return a.mode == b.mode && a.uid == b.uid && a.gid == b.gid && a.size == b.size && a.ino == b.ino &&
		a.mtime == b.mtime && a.ctime == b.ctime
}

// sameObject tells a directory from one deleted and recreated at the same path. Inode numbers are
// reused quickly (ext4), so the birth time decides where the filesystem records one.
func (a *fstat) sameObject(b *fstat) bool {
	return a.ino == b.ino && (!a.hasBtime || !b.hasBtime || a.btime == b.btime)
}

// fnode is one inventory entry; kids (directories only) are sorted by name.
type fnode struct {
	name   string
	st     fstat
	xattrs string // of a directory: the tar-visible xattrs, encoded
	kids   []*fnode
}

// dirChanged compares what a tar shows of a directory: not its ctime, which also moves when an
// entry is added and removed again (the sandbox's mountpoints), nor its size.
func dirChanged(a, b *fnode) bool {
	return a.st.mode != b.st.mode || a.st.uid != b.st.uid || a.st.gid != b.st.gid ||
		a.st.mtime != b.st.mtime || a.xattrs != b.xattrs
}

func encodeXattrs(xs []xattr) string {
	var b strings.Builder
	for _, x := range xs {
		b.WriteString(x.name + "\x00" + string(x.value) + "\x00")
	}
	return b.String()
}

func (n *fnode) child(name string) *fnode {
	i := sort.Search(len(n.kids), func(i int) bool { return n.kids[i].name >= name })
	if i < len(n.kids) && n.kids[i].name == name {
		return n.kids[i]
	}
	return nil
}

func (n *fnode) lookup(rel string) *fnode {
	if rel == "" {
		return n
	}
	for part := range strings.SplitSeq(rel, "/") {
		if n = n.child(part); n == nil {
			return nil
		}
	}
	return n
}

// lower is the copy driver's lowerFunc: the inventory is the merged view at Prepare.
func (n *fnode) lower(rel string) lowerEntry {
	e := n.lookup(rel)
	if e == nil {
		return lowerEntry{known: true}
	}
	return lowerEntry{exists: true, dir: e.st.typ() == unix.S_IFDIR}
}

// touchedEntry is an entry of the root that went into the shadow tree (and so into the tar).
type touchedEntry struct {
	rel  string
	node *fnode
}

type frame struct {
	rel    string
	node   *fnode // this directory in the new inventory
	fd     int    // the directory in the root
	shadow int    // its counterpart in the shadow tree, -1 until needed
}

type treeDiff struct {
	ctx     context.Context
	scan    bool // inventory only, no shadow tree
	stack   []*frame
	touched []touchedEntry
}

// scanTree takes the inventory of root.
func scanTree(ctx context.Context, root string) (*fnode, error) {
	tree, _, err := diffTree(ctx, root, nil, "")
	return tree, err
}

// diffTree walks root, building its new inventory; with a shadow path, it compares with old and
// fills the (existing, empty) shadow directory with the changes.
func diffTree(ctx context.Context, root string, old *fnode, shadow string) (*fnode, []touchedEntry, error) {
	rootfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	defer unix.Close(rootfd)
	st, err := statxAt(rootfd, ".")
	if err != nil {
		return nil, nil, err
	}
	top := &fnode{st: st}
	t := &treeDiff{ctx: ctx, scan: shadow == ""}
	f := &frame{node: top, fd: rootfd, shadow: -1}
	if !t.scan {
		if f.shadow, err = unix.Open(shadow, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			return nil, nil, err
		}
		defer unix.Close(f.shadow)
	}
	t.stack = []*frame{f}
	if err := t.walk(old, false); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", root, err)
	}
	return top, t.touched, nil
}

func (t *treeDiff) top() *frame { return t.stack[len(t.stack)-1] }

// walk compares the directory on top of the stack with old (nil: everything in it is new when all).
func (t *treeDiff) walk(old *fnode, all bool) error {
	f := t.top()
	names, err := readDirNames(f.fd)
	if err != nil {
		return fmt.Errorf("read %s: %w", displayName(f.rel), err)
	}
	slices.Sort(names)
	var oldKids []*fnode
	if old != nil && !all {
		oldKids = old.kids
	}
	oi := 0
	for _, name := range names {
		if err := t.ctx.Err(); err != nil {
			return err
		}
		for ; oi < len(oldKids) && oldKids[oi].name < name; oi++ {
			if err := t.whiteout(oldKids[oi].name); err != nil {
				return err
			}
		}
		var prev *fnode
		if oi < len(oldKids) && oldKids[oi].name == name {
			prev = oldKids[oi]
			oi++
		}
		st, err := statxAt(f.fd, name)
		if errors.Is(err, unix.ENOENT) || (err == nil && st.typ() == unix.S_IFSOCK) {
			// vanished since readdir, or a socket (never content)
			if prev != nil {
				if err := t.whiteout(name); err != nil {
					return err
				}
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", joinName(f.rel, name), err)
		}
		if !t.scan && strings.HasPrefix(name, whiteoutPrefix) && (prev == nil || !prev.st.same(&st)) {
			// The shadow holds this diff's whiteouts under such names: a file a step made must
			// not pass for one.
			return fmt.Errorf("/%s: %w", joinName(f.rel, name), ErrReservedName)
		}
		n := &fnode{name: name, st: st}
		f.node.kids = append(f.node.kids, n)
		isDirectory := st.typ() == unix.S_IFDIR
		switch {
		case t.scan:
			if isDirectory {
				err = t.descend(n, nil, descScan)
			}
		case all || prev == nil || prev.st.typ() != st.typ():
			// new (or a different type): all of it, and no opaque marker, since nothing of the
			// same kind was below (overlay marks such a directory opaque but Diff skips the marker)
			if isDirectory {
				err = t.descend(n, nil, descNew)
			} else {
				err = t.link(n)
			}
		case isDirectory && !prev.st.sameObject(&st):
			err = t.descend(n, nil, descRecreated)
		case isDirectory:
			err = t.descend(n, prev, descCompare)
		case !prev.st.same(&st):
			err = t.link(n)
		}
		if err != nil {
			return err
		}
	}
	for ; oi < len(oldKids); oi++ {
		if err := t.whiteout(oldKids[oi].name); err != nil {
			return err
		}
	}
	return nil
}

type descMode int

const (
	descScan      descMode = iota // inventory only
	descCompare                   // the directory was there: compare
	descNew                       // new directory: all of it
	descRecreated                 // deleted and recreated: all of it, opaque
)

// descend walks into directory n (old: its inventory entry, for descCompare).
func (t *treeDiff) descend(n *fnode, old *fnode, mode descMode) error {
	parent := t.top()
	fd, err := openDirAt(parent.fd, n.name)
	if err != nil {
		return fmt.Errorf("%s: %w", joinName(parent.rel, n.name), err)
	}
	xs, err := readXattrs(fd, keepXattrInTar)
	if err != nil {
		unix.Close(fd)
		return fmt.Errorf("%s: %w", joinName(parent.rel, n.name), err)
	}
	n.xattrs = encodeXattrs(xs)
	f := &frame{rel: joinName(parent.rel, n.name), node: n, fd: fd, shadow: -1}
	t.stack = append(t.stack, f)
	if mode == descNew || mode == descRecreated || (mode == descCompare && dirChanged(old, n)) {
		err = t.ensureShadow()
	}
	if err == nil && mode == descRecreated {
		err = createEmpty(f.shadow, whiteoutOpaque)
	}
	if err == nil {
		err = t.walk(old, mode == descNew || mode == descRecreated)
	}
	t.stack = t.stack[:len(t.stack)-1]
	if f.shadow >= 0 {
		// Last, as in Apply: the mode may forbid writes, and adding entries moves the mtime.
		if err == nil {
			err = retry(func() error { return unix.Fchmod(f.shadow, n.st.mode&0o7777) })
		}
		if err == nil {
			mt := unix.Timespec{Sec: n.st.mtime.Sec, Nsec: int64(n.st.mtime.Nsec)}
			err = futimens(f.shadow, &[2]unix.Timespec{mt, mt})
		}
		unix.Close(f.shadow)
	}
	unix.Close(fd)
	return err
}

// ensureShadow creates the shadow counterparts of the directories on the stack, as overlay copies
// up the ancestors of a changed entry: same owner and xattrs now, mode and times when done.
func (t *treeDiff) ensureShadow() error {
	for i := 1; i < len(t.stack); i++ {
		f := t.stack[i]
		if f.shadow >= 0 {
			continue
		}
		parent := t.stack[i-1].shadow
		name := f.node.name
		if err := unix.Mkdirat(parent, name, 0o700); err != nil {
			return fmt.Errorf("shadow %s: %w", f.rel, err)
		}
		fd, err := openDirAt(parent, name)
		if err != nil {
			return fmt.Errorf("shadow %s: %w", f.rel, err)
		}
		f.shadow = fd
		if err := copyOwnerXattrs(f.fd, fd, &f.node.st); err != nil {
			return fmt.Errorf("shadow %s: %w", f.rel, err)
		}
		t.touched = append(t.touched, touchedEntry{f.rel, f.node})
	}
	return nil
}

func copyOwnerXattrs(src, dst int, st *fstat) error {
	xs, err := readXattrs(src, keepXattrInTar) // only what the tar carries
	if err != nil {
		return err
	}
	for _, x := range xs {
		if err := unix.Fsetxattr(dst, x.name, x.value, 0); err != nil {
			return fmt.Errorf("set xattr %s: %w", x.name, err)
		}
	}
	return retry(func() error { return unix.Fchown(dst, int(st.uid), int(st.gid)) })
}

// link puts a changed non-directory into the shadow tree: a hard link, so the tar writer reads the
// very inode (metadata, xattrs, and hard-link identity with other changed paths).
func (t *treeDiff) link(n *fnode) error {
	if err := t.ensureShadow(); err != nil {
		return err
	}
	f := t.top()
	rel := joinName(f.rel, n.name)
	err := unix.Linkat(f.fd, n.name, f.shadow, n.name, 0)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EMLINK) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EACCES) {
		err = copyEntryInto(f.fd, f.shadow, n.name, &n.st) // protected_hardlinks, link limits
	}
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	t.touched = append(t.touched, touchedEntry{rel, n})
	return nil
}

// copyEntryInto copies a regular file or symlink with its metadata, when it cannot be linked.
func copyEntryInto(src, dst int, name string, st *fstat) error {
	times := []unix.Timespec{{Sec: st.mtime.Sec, Nsec: int64(st.mtime.Nsec)}, {Sec: st.mtime.Sec, Nsec: int64(st.mtime.Nsec)}}
	switch st.typ() {
	case unix.S_IFLNK:
		target, err := readlinkAt(src, name)
		if err == nil {
			err = unix.Symlinkat(target, dst, name)
		}
		if err == nil {
			err = unix.Fchownat(dst, name, int(st.uid), int(st.gid), unix.AT_SYMLINK_NOFOLLOW)
		}
		if err == nil {
			err = unix.UtimesNanoAt(dst, name, times, unix.AT_SYMLINK_NOFOLLOW)
		}
		return err
	case unix.S_IFREG:
		sfd, err := openAt(src, name, unix.O_RDONLY, 0)
		if err != nil {
			return err
		}
		defer unix.Close(sfd)
		dfd, err := openAt(dst, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		defer unix.Close(dfd)
		if err := copyData(dfd, sfd, st.size); err != nil {
			return err
		}
		if err := copyOwnerXattrs(sfd, dfd, st); err != nil {
			return err
		}
		if err := unix.Fchmod(dfd, st.mode&0o7777); err != nil {
			return err
		}
		return futimens(dfd, (*[2]unix.Timespec)(times))
	}
	return fmt.Errorf("cannot hard-link file type %#o", st.typ())
}

func (t *treeDiff) whiteout(name string) error {
	if err := t.ensureShadow(); err != nil {
		return err
	}
	return createEmpty(t.top().shadow, whiteoutPrefix+name)
}

func createEmpty(dirfd int, name string) error {
	fd, err := openAt(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	return unix.Close(fd)
}

// refresh re-reads the inventory entries of touched paths: linking them into the shadow tree and
// unlinking them again moved their ctime, as clamping their mtimes does.
func refresh(root string, touched []touchedEntry) error {
	rootfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(rootfd)
	for _, e := range touched {
		d, base := splitName(e.rel)
		fd, err := openBeneath(rootfd, d)
		if err != nil {
			return err
		}
		st, err := statxAt(fd, base)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("%s: %w", e.rel, err)
		}
		e.node.st = st
	}
	return nil
}
