package snapshot

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/builder-dev/builder/internal/countio"
	"golang.org/x/sys/unix"
)

// ApplyOptions tune Apply and CopyTree for the privileges at hand.
type ApplyOptions struct {
	// NoWhiteouts makes ".wh." entries ordinary files (ADD of an archive: it is content, not a layer).
	NoWhiteouts bool
	// KeptWhiteout, with NoWhiteouts, is told of each ".wh." entry written as an ordinary file (its
	// directory and name), and a whiteout name used as a directory is refused: the layer store turns
	// them into overlay whiteouts after the extraction, with no second reader of the tar.
	KeptWhiteout func(dir, base string)
	// NoChown leaves ownership to the extracting process.
	NoChown bool
	// IgnoreChownErrors goes on when chown fails with EPERM or EINVAL (ids not mapped in this user namespace).
	IgnoreChownErrors bool
	// IgnoreXattrErrors goes on when setting an xattr fails with ENOTSUP or EPERM, in any namespace.
	IgnoreXattrErrors bool
	// SkipDevices leaves out device nodes that cannot be created (EPERM) instead of failing.
	SkipDevices bool
	// MapOwner maps the archive's ids to the ids to chown to (nil: unchanged).
	MapOwner func(uid, gid int) (int, int)
	// ForHost extracts for a host directory (--output type=local), where an image's content must
	// not gain powers: device nodes are left out, setuid and setgid bits are cleared and file
	// capabilities (security.capability) are dropped, whoever runs the extraction.
	ForHost bool
}

// Apply extracts an uncompressed layer tar into root and returns the bytes it read from r (the whole
// stream, trailing padding included, so a caller hashing r sees all of it).
//
// Every path is resolved inside root as under chroot: a symlink in the tree is followed but cannot lead
// out. Absolute names, names with "..", and hard links to such names are refused, naming the entry.
// Whiteouts (unless opts.NoWhiteouts): ".wh.NAME" removes NAME, ".wh..wh..opq" empties its directory;
// both affect only what lower layers put there, never entries of this same layer, in whatever order
// they come. Other ".wh..wh." names are ignored. An entry replaces an existing non-directory (or a
// directory, recursively, when the entry is not one); a directory entry over a directory keeps its
// contents and updates its metadata. Modes are applied after chown, directory modes and times after
// their contents. The root entry ("./") is skipped: the root's metadata belongs to the caller.
func Apply(ctx context.Context, root string, r io.Reader, opts ApplyOptions) (int64, error) {
	ir, err := openInRoot(root)
	if err != nil {
		return 0, fmt.Errorf("apply layer: %w", err)
	}
	defer ir.Close()
	cr := &countio.Reader{R: r}
	br := bufio.NewReaderSize(cr, 64<<10) // tar reads headers 512 bytes at a time
	tr := tar.NewReader(br)
	bp := getBuf()
	defer putBuf(bp)
	a := &applier{root: ir, opts: &opts, set: setter{&opts}, buf: *bp,
		touched: map[string]struct{}{}, dirIdx: map[string]int{}}
	ir.newDir = a.impliedDir
	for {
		if err := ctx.Err(); err != nil {
			return cr.N, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return cr.N, fmt.Errorf("apply layer: read: %w", err)
		}
		ir.sweep()
		if err := a.entry(hdr, tr); err != nil {
			return cr.N, fmt.Errorf("apply layer: entry %q: %w", hdr.Name, err)
		}
	}
	if err := a.finishDirs(); err != nil {
		return cr.N, fmt.Errorf("apply layer: %w", err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return cr.N, fmt.Errorf("apply layer: read: %w", err)
	}
	return cr.N, nil
}

type applier struct {
	root *inRoot
	opts *ApplyOptions
	set  setter
	buf  []byte
	// touched holds every path this layer created, with all its ancestors, so whiteouts spare them.
	touched map[string]struct{}
	// dirs are directories whose final mode and times wait until their contents are written.
	dirs   []pendingDir
	dirIdx map[string]int
}

type pendingDir struct {
	rel   string
	mode  uint32
	times [2]unix.Timespec
}

func (a *applier) entry(hdr *tar.Header, tr io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name, err := cleanName(hdr.Name)
	if err != nil || name == "" {
		return err
	}
	dir, base := splitName(name)
	if !a.opts.NoWhiteouts || a.opts.KeptWhiteout != nil {
		// A whiteout name is reserved: as a directory it would be both a deletion and a parent.
		if strings.HasPrefix(dir, whiteoutPrefix) || strings.Contains(dir, "/"+whiteoutPrefix) {
			return fmt.Errorf("%w: whiteout name used as a directory", errUnsafeName)
		}
		if strings.HasPrefix(base, whiteoutPrefix) {
			if !a.opts.NoWhiteouts {
				return a.whiteout(dir, base)
			}
			a.opts.KeptWhiteout(dir, base)
		}
	}
	pfd, err := a.root.dir(dir, true)
	if err != nil {
		return err
	}
	a.markTouched(name)
	at := a.attrs(hdr)
	switch hdr.Typeflag {
	case tar.TypeReg, '\x00', tar.TypeGNUSparse, tar.TypeCont:
		return a.set.createFile(pfd, base, at, func() error { return a.clear(pfd, base, false) }, func(fd int) error {
			_, err := io.CopyBuffer(fdWriter(fd), tr, a.buf)
			return err
		})
	case tar.TypeDir:
		return a.dir(pfd, name, base, at)
	case tar.TypeSymlink:
		err := a.make(pfd, base, func() error { return unix.Symlinkat(hdr.Linkname, pfd, base) })
		if err != nil {
			return fmt.Errorf("symlink: %w", err)
		}
		return a.set.applyAt(pfd, base, at, true)
	case tar.TypeLink:
		return a.hardlink(pfd, base, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := uint32(unix.S_IFIFO)
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode = unix.S_IFCHR
		case tar.TypeBlock:
			mode = unix.S_IFBLK
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		skipped := false
		err := a.make(pfd, base, func() (err error) {
			skipped, err = a.set.mknod(pfd, base, mode|0o600, dev)
			return err
		})
		if err != nil || skipped {
			return err
		}
		return a.set.applyAt(pfd, base, at, false)
	}
	return fmt.Errorf("unsupported entry type %q", hdr.Typeflag)
}

// impliedDir owns a parent directory the archive did not list by (mapped) root, as containers/storage
// does; otherwise it would inherit the group of a setgid parent, depending on entry order.
func (a *applier) impliedDir(dirfd int, name string) error {
	if a.opts.NoChown {
		return nil
	}
	uid, gid := a.set.owner(0, 0)
	return a.set.chownErr(unix.Fchownat(dirfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW))
}

func (a *applier) attrs(hdr *tar.Header) *attrs {
	at := &attrs{mode: uint32(hdr.Mode) & 0o7777}
	if a.opts.ForHost {
		at.mode &^= unix.S_ISUID | unix.S_ISGID
	}
	at.uid, at.gid = a.set.owner(hdr.Uid, hdr.Gid)
	mt := hdr.ModTime
	at.times[1] = timespec(mt.Unix(), int64(mt.Nanosecond()))
	at.times[0] = at.times[1]
	if t := hdr.AccessTime; !t.IsZero() {
		at.times[0] = timespec(t.Unix(), int64(t.Nanosecond()))
	}
	keys := make([]string, 0, len(hdr.PAXRecords))
	for k := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, paxXattr); ok && keepXattrOnDisk(name) && !(a.opts.ForHost && name == "security.capability") {
			keys = append(keys, name)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		at.xattrs = append(at.xattrs, xattr{k, []byte(hdr.PAXRecords[paxXattr+k])})
	}
	if a.opts.NoChown && (at.uid != 0 || at.gid != 0) && !a.opts.ForHost {
		// Not chowned: the owner a later layer must show is kept aside.
		at.xattrs = append(at.xattrs, xattr{OwnerXattr, []byte(fmt.Sprintf("%d:%d", at.uid, at.gid))})
	}
	return at
}

// make runs mk and, when the name is taken, clears it and runs mk again: a fresh name, the usual
// case, costs no extra lstat.
func (a *applier) make(pfd int, base string, mk func() error) error {
	err := mk()
	if errors.Is(err, unix.EEXIST) {
		if err = a.clear(pfd, base, false); err == nil {
			err = mk()
		}
	}
	return err
}

// clear makes room for a new entry at base: it removes whatever is there, recursively for a directory
// unless keepDir.
func (a *applier) clear(pfd int, base string, keepDir bool) error {
	st, err := lstatAt(pfd, base)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	if keepDir && isDir(&st) {
		return nil
	}
	if isDir(&st) || isLink(&st) {
		a.root.invalidate()
	}
	if err := removeAllAt(pfd, base); err != nil {
		return fmt.Errorf("replace existing: %w", err)
	}
	return nil
}

func (a *applier) dir(pfd int, rel, base string, at *attrs) error {
	mkdir := func() error { return retry(func() error { return unix.Mkdirat(pfd, base, 0o700) }) }
	err := mkdir()
	if errors.Is(err, unix.EEXIST) {
		// A directory stays (the layer updates its metadata); anything else gives way.
		if err = a.clear(pfd, base, true); err == nil {
			if err = mkdir(); errors.Is(err, unix.EEXIST) {
				err = nil
			}
		}
	}
	if err != nil {
		return fmt.Errorf("mkdir: %w", err)
	}
	fd, err := openDirAt(pfd, base)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// Keep the directory writable by its owner until its contents are in; the real mode comes last.
	final := at.mode
	tmp := *at
	tmp.mode |= 0o700
	if err := a.set.applyFd(fd, &tmp, false); err != nil {
		return err
	}
	p := pendingDir{rel: rel, times: at.times, mode: final}
	if i, ok := a.dirIdx[rel]; ok {
		a.dirs[i] = p
	} else {
		a.dirIdx[rel] = len(a.dirs)
		a.dirs = append(a.dirs, p)
	}
	return nil
}

func (a *applier) finishDirs() error {
	for _, d := range a.dirs {
		a.root.sweep()
		dir, base := splitName(d.rel)
		pfd, err := a.root.dir(dir, false)
		if err != nil {
			continue // removed by a later entry
		}
		fd, err := openDirAt(pfd, base)
		if err != nil {
			continue // removed or replaced by a later entry
		}
		if d.mode&0o700 != 0o700 { // a.dir left it at mode|0o700
			err = retry(func() error { return unix.Fchmod(fd, d.mode) })
		}
		if err == nil {
			err = futimens(fd, &d.times)
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("%s: %w", d.rel, err)
		}
	}
	return nil
}

func (a *applier) hardlink(pfd int, base, linkname string) error {
	target, err := cleanName(linkname)
	if err != nil {
		return fmt.Errorf("hard link: %w", err)
	}
	if target == "" {
		return fmt.Errorf("hard link to the root")
	}
	tdir, tbase := splitName(target)
	tfd, err := a.root.dir(tdir, false)
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", linkname, err)
	}
	tst, err := lstatAt(tfd, tbase)
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", linkname, err)
	}
	if isDir(&tst) {
		return fmt.Errorf("hard link target %q is a directory", linkname)
	}
	if st, err := lstatAt(pfd, base); err == nil && st.Dev == tst.Dev && st.Ino == tst.Ino {
		return nil // already the same file (a link to itself, or a repeated entry)
	}
	if err := a.clear(pfd, base, false); err != nil {
		return err
	}
	if err := unix.Linkat(tfd, tbase, pfd, base, 0); err != nil {
		return fmt.Errorf("hard link to %q: %w", linkname, err)
	}
	return nil
}

func (a *applier) markTouched(rel string) {
	for rel != "" {
		if _, ok := a.touched[rel]; ok {
			return // its ancestors are in already
		}
		a.touched[rel] = struct{}{}
		rel, _ = splitName(rel)
	}
}

func (a *applier) whiteout(dir, base string) error {
	if base == whiteoutOpaque {
		return a.opaque(dir)
	}
	if strings.HasPrefix(base, whiteoutMetaPrefix) {
		return nil // other AUFS metadata (.wh..wh.plnk, ...): meaningless here
	}
	victim := base[len(whiteoutPrefix):]
	if victim == "" || victim == "." || victim == ".." {
		return fmt.Errorf("%w: whiteout of %q", errUnsafeName, victim)
	}
	pfd, err := a.root.dir(dir, false)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil // nothing below to hide
	}
	if err != nil {
		return err
	}
	return a.removeLower(pfd, joinName(dir, victim), victim)
}

// opaque removes what lower layers put in dir, sparing entries of this layer.
func (a *applier) opaque(dir string) error {
	pfd, err := a.root.dir(dir, false)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return err
	}
	return a.removeLowerChildren(pfd, ".", dir)
}

// removeLower removes name under pfd unless this layer wrote it; for a directory this layer wrote (or
// merged into), it recurses, so lower contents go while this layer's stay.
func (a *applier) removeLower(pfd int, rel, name string) error {
	st, err := lstatAt(pfd, name)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, mine := a.touched[rel]; !mine {
		if isDir(&st) || isLink(&st) {
			a.root.invalidate()
		}
		return removeAllAt(pfd, name)
	}
	if !isDir(&st) {
		return nil
	}
	return a.removeLowerChildren(pfd, name, rel)
}

func (a *applier) removeLowerChildren(pfd int, name, rel string) error {
	fd, err := openDirAt(pfd, name)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	names, err := readDirNames(fd)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := a.removeLower(fd, joinName(rel, n), n); err != nil {
			return err
		}
	}
	return nil
}
