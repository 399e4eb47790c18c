package snapshot

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// WriteOptions shape the tar WriteTar produces. The zero value writes a plain tree as-is.
type WriteOptions struct {
	// Clamp, when set, caps every mtime (SOURCE_DATE_EPOCH / --timestamp): min(mtime, Clamp).
	Clamp *time.Time
	// Overlay, when set, reads dir as an overlay upper dir and converts its whiteouts to OCI ones.
	Overlay *OverlayOptions
	// MapOwner maps on-disk ids to the ids written in headers (nil: unchanged).
	MapOwner func(uid, gid int) (int, int)
	// RecordedOwners takes a file's or directory's owner from its
	// OwnerXattr when it has one (trees built without chown).
	RecordedOwners bool
	// Include, when non-nil, limits the walk to these paths relative to dir (a directory brings its
	// whole subtree), plus headers for their parent directories. A missing path is an error.
	Include []string
	// RefuseWhiteoutFiles fails on an on-disk file named ".wh.*" (ErrReservedName): in a kernel
	// overlay upper dir whiteouts are 0/0 devices, so such a file is something a step created.
	RefuseWhiteoutFiles bool
}

// OverlayOptions describe the overlay whose upper dir WriteTar reads.
type OverlayOptions struct {
	// XattrPrefix is the namespace of overlay's own xattrs: "user.overlay." (userxattr, rootless)
	// or "trusted.overlay.".
	XattrPrefix string
	// LowerHasDir reports whether rel (e.g. "etc/apt") is a directory in the lower layers. An opaque
	// directory gets a ".wh..wh..opq" entry only then: a directory new in this layer hides nothing.
	// nil means "always".
	LowerHasDir func(rel string) bool
}

// WriteTar writes the tree under dir as an uncompressed OCI layer tar to w.
//
// The output is deterministic: identical trees give identical bytes. Entries come depth first, each
// directory's entries sorted by their tar name, a directory before its contents; PAX format; names
// relative ("etc/passwd", directories "etc/"); no user or group names, no atime or ctime; mtimes
// truncated to seconds and clamped by opts.Clamp. A file seen again under the same device and inode
// becomes a hard link to its first path. Xattrs are kept as SCHILY.xattr records per keepXattrInTar.
// Sockets are skipped. A file named ".wh.*" on disk is written as-is, so it acts as a whiteout.
//
// With opts.Overlay, a 0/0 character device becomes the regular empty file ".wh.<name>" (mode 0),
// and an opaque directory is followed by "<dir>/.wh..wh..opq" when LowerHasDir says it existed below
// and no ancestor in this layer is opaque already. Whiteouts carry mtime Clamp, or the epoch.
func WriteTar(ctx context.Context, w io.Writer, dir string, opts WriteOptions) error {
	return writeTarTo(ctx, tar.NewWriter(w), dir, opts)
}

// tarSink is what WriteTar writes entries to: a tar.Writer, or a filter
// that sees each header before deciding what to write (writeUpper's
// normalizer), with no tar encoding and decoding between the two.
type tarSink interface {
	WriteHeader(*tar.Header) error
	Write([]byte) (int, error)
	Close() error
}

func writeTarTo(ctx context.Context, tw tarSink, dir string, opts WriteOptions) error {
	sel, err := newSelection(opts.Include)
	if err != nil {
		return err
	}
	rootfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("layer tar: open %s: %w", dir, err)
	}
	defer unix.Close(rootfd)
	bp := getBuf()
	defer putBuf(bp)
	g := &tarGen{ctx: ctx, tw: tw, opts: &opts, buf: *bp, links: map[devIno]string{}}
	if opts.Clamp != nil {
		c := time.Unix(opts.Clamp.Unix(), 0)
		g.clamp = &c
	}
	if err := g.walk(rootfd, "", sel, false); err != nil {
		return err
	}
	return g.tw.Close()
}

type devIno struct{ dev, ino uint64 }

type tarGen struct {
	ctx   context.Context
	tw    tarSink
	opts  *WriteOptions
	clamp *time.Time
	buf   []byte
	links map[devIno]string // first path of each multiply linked file written so far
}

// child is one directory entry, stat'ed once, with the name it sorts and appears under in the tar.
type child struct {
	name, tarName string
	st            unix.Stat_t
	whiteout      bool
}

func (g *tarGen) walk(dirfd int, rel string, sel *selection, opaqueAbove bool) error {
	var names []string
	if sel.all {
		var err error
		if names, err = readDirNames(dirfd); err != nil {
			return fmt.Errorf("layer tar: read %s: %w", displayName(rel), err)
		}
	} else {
		names = sel.childNames()
	}
	kids := make([]child, 0, len(names))
	for _, name := range names {
		st, err := lstatAt(dirfd, name)
		if err != nil {
			if errors.Is(err, unix.ENOENT) && sel.all {
				continue // vanished since readdir
			}
			return fmt.Errorf("layer tar: %s: %w", joinName(rel, name), err)
		}
		if !sel.all && sel.kids[name].partial() && !isDir(&st) {
			return fmt.Errorf("layer tar: include path under %s: %w", joinName(rel, name), unix.ENOTDIR)
		}
		c := child{name: name, tarName: name, st: st}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFSOCK:
			continue // sockets are endpoints of a running process, not content
		case unix.S_IFCHR:
			if g.opts.Overlay != nil && st.Rdev == 0 {
				c.whiteout, c.tarName = true, whiteoutPrefix+name
			}
		}
		if !c.whiteout && g.opts.RefuseWhiteoutFiles && strings.HasPrefix(name, whiteoutPrefix) {
			return fmt.Errorf("/%s: %w", joinName(rel, name), ErrReservedName)
		}
		kids = append(kids, c)
	}
	slices.SortFunc(kids, func(a, b child) int { return strings.Compare(a.tarName, b.tarName) })
	for i := range kids {
		if err := g.ctx.Err(); err != nil {
			return err
		}
		c := &kids[i]
		crel := joinName(rel, c.name)
		if err := g.entry(dirfd, rel, crel, c, sel.child(c.name), opaqueAbove); err != nil {
			return err
		}
	}
	return nil
}

func (g *tarGen) entry(dirfd int, rel, crel string, c *child, sel *selection, opaqueAbove bool) error {
	st := &c.st
	if c.whiteout {
		return g.whiteout(joinName(rel, c.tarName))
	}
	hdr := &tar.Header{
		Name:    crel,
		Mode:    int64(st.Mode & 0o7777),
		ModTime: g.mtime(st.Mtim.Sec),
		Format:  tar.FormatPAX,
	}
	hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
	if g.opts.MapOwner != nil {
		hdr.Uid, hdr.Gid = g.opts.MapOwner(hdr.Uid, hdr.Gid)
	}
	fail := func(err error) error { return fmt.Errorf("layer tar: %s: %w", crel, err) }
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		fd, err := openDirAt(dirfd, c.name)
		if err != nil {
			return fail(err)
		}
		defer unix.Close(fd)
		hdr.Typeflag, hdr.Name = tar.TypeDir, crel+"/"
		if err := g.addXattrs(hdr, fd); err != nil {
			return fail(err)
		}
		opaque := false
		if ov := g.opts.Overlay; ov != nil {
			v, err := getXattr(fd, ov.XattrPrefix+"opaque")
			opaque = err == nil && string(v) == "y"
		}
		if err := g.tw.WriteHeader(hdr); err != nil {
			return fail(err)
		}
		if opaque && !opaqueAbove && (g.opts.Overlay.LowerHasDir == nil || g.opts.Overlay.LowerHasDir(crel)) {
			if err := g.whiteout(joinName(crel, whiteoutOpaque)); err != nil {
				return err
			}
		}
		return g.walk(fd, crel, sel, opaqueAbove || opaque)
	case unix.S_IFREG:
		if st.Nlink > 1 {
			key := devIno{st.Dev, st.Ino}
			if first, ok := g.links[key]; ok {
				hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
				return g.writeHeader(hdr, crel)
			}
			g.links[key] = crel
		}
		fd, err := openAt(dirfd, c.name, unix.O_RDONLY, 0)
		if err != nil {
			return fail(err)
		}
		defer unix.Close(fd)
		if err := g.addXattrs(hdr, fd); err != nil {
			return fail(err)
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
		if err := g.tw.WriteHeader(hdr); err != nil {
			return fail(err)
		}
		n, err := io.CopyBuffer(struct{ io.Writer }{g.tw}, io.LimitReader(fdReader(fd), st.Size), g.buf)
		if err == nil && n != st.Size {
			err = fmt.Errorf("file shrank from %d to %d bytes while being read", st.Size, n)
		}
		if err != nil {
			return fail(err)
		}
		return nil
	case unix.S_IFLNK:
		target, err := readlinkAt(dirfd, c.name)
		if err != nil {
			return fail(err)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return fail(fmt.Errorf("unsupported file type %#o", st.Mode&unix.S_IFMT))
	}
	// Only directories and regular files can carry user.* or capability xattrs, the ones we keep.
	return g.writeHeader(hdr, crel)
}

func (g *tarGen) writeHeader(hdr *tar.Header, rel string) error {
	if err := g.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("layer tar: %s: %w", rel, err)
	}
	return nil
}

// whiteout writes an empty regular file entry with fixed metadata, so diffs stay reproducible.
func (g *tarGen) whiteout(name string) error {
	mt := time.Unix(0, 0)
	if g.clamp != nil {
		mt = *g.clamp
	}
	return g.writeHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, ModTime: mt, Format: tar.FormatPAX}, name)
}

func (g *tarGen) mtime(sec int64) time.Time {
	t := time.Unix(sec, 0)
	if g.clamp != nil && t.After(*g.clamp) {
		return *g.clamp
	}
	return t
}

func (g *tarGen) addXattrs(hdr *tar.Header, fd int) error {
	if g.opts.RecordedOwners {
		if uid, gid, ok := recordedOwner(fd); ok {
			hdr.Uid, hdr.Gid = uid, gid
		}
	}
	keep := keepXattrInTar
	if ov := g.opts.Overlay; ov != nil && ov.XattrPrefix != "" {
		keep = func(name string) bool { return keepXattrInTar(name) && !strings.HasPrefix(name, ov.XattrPrefix) }
	}
	xs, err := readXattrs(fd, keep)
	if err != nil {
		return fmt.Errorf("read xattrs: %w", err)
	}
	for _, x := range xs {
		if len(x.value) == 0 {
			continue // an empty PAX value means "delete the record": it cannot be carried
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords[paxXattr+x.name] = string(x.value)
	}
	return nil
}

func displayName(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}

// selection is the tree of Include paths; all marks a fully included subtree.
type selection struct {
	all  bool
	kids map[string]*selection
}

var everything = &selection{all: true}

func newSelection(paths []string) (*selection, error) {
	if paths == nil {
		return everything, nil
	}
	root := &selection{kids: map[string]*selection{}}
	for _, p := range paths {
		rel, err := cleanName(strings.TrimLeft(p, "/"))
		if err != nil {
			return nil, fmt.Errorf("layer tar: include: %w", err)
		}
		if rel == "" {
			return everything, nil
		}
		n := root
		for part := range strings.SplitSeq(rel, "/") {
			if n.all {
				break
			}
			k := n.kids[part]
			if k == nil {
				k = &selection{kids: map[string]*selection{}}
				n.kids[part] = k
			}
			n = k
		}
		n.all, n.kids = true, nil
	}
	return root, nil
}

func (s *selection) partial() bool { return !s.all && len(s.kids) > 0 }

func (s *selection) child(name string) *selection {
	if s.all {
		return s
	}
	return s.kids[name]
}

func (s *selection) childNames() []string {
	names := make([]string, 0, len(s.kids))
	for n := range s.kids {
		names = append(names, n)
	}
	return names
}

// recordedOwner reads OwnerXattr of fd.
func recordedOwner(fd int) (int, int, bool) {
	v, err := getXattr(fd, OwnerXattr)
	if err != nil {
		return 0, 0, false
	}
	var uid, gid int
	if _, err := fmt.Sscanf(string(v), "%d:%d", &uid, &gid); err != nil || uid < 0 || gid < 0 {
		return 0, 0, false
	}
	return uid, gid, true
}
