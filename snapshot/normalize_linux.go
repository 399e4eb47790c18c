package snapshot

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// upperFormat says how an upper dir marks what it hides.
type upperFormat struct {
	// opaqueXattrs mark a directory opaque: the kernel's own prefix for kernel overlayfs (a
	// container may set any other user.* name), all known ones for fuse-overlayfs.
	opaqueXattrs []string
	// markerFiles: ".wh..wh..opq" files mark opaque too (fuse-overlayfs, the copy driver's shadow).
	markerFiles bool
	// prune drops what an overlay upper dir holds without any change to show: directories copied
	// up whose metadata equals the lower one's and under which nothing is written (the sandbox
	// adds and removes mountpoints such as /etc/hosts), and whiteouts of names no lower layer has
	// (fuse-overlayfs leaves those; the kernel never does).
	prune bool
	// refuseFiles: whiteouts are never regular files here (kernel overlayfs), so a ".wh." file is
	// one a step made (see WriteOptions.RefuseWhiteoutFiles).
	refuseFiles bool
}

// writeUpper writes the layer tar of an upper dir with exactly the entries and bytes the kernel
// format would give under WriteTar's rules, whatever format the upper dir uses: char 0/0 or
// ".wh.NAME" file whiteouts; opaque xattrs of any namespace, or ".wh..wh..opq" files (with the
// 0/0 ".wh..opq" fuse-overlayfs adds).
//
// WriteTar runs with an overlay prefix no xattr can match, so it converts 0/0 devices and never
// marks a directory opaque; this filter then canonicalises ".wh." entries, drops on-disk opaque
// markers, writes one ".wh..wh..opq" right after each opaque directory under WriteTar's rule (the
// directory existed below and no ancestor in this layer is opaque), and prunes.
// WriteTar hands it its headers directly (normSink): one tar encoding, no pipe, no second parse.
func writeUpper(ctx context.Context, w io.Writer, upper string, opts WriteOptions, f upperFormat, lower lowerFunc) error {
	upperfd, err := unix.Open(upper, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(upperfd)
	// An empty prefix looks for the xattr "opaque", a name without namespace the kernel refuses.
	opts.Overlay = &OverlayOptions{XattrPrefix: ""}
	opts.Include = nil
	opts.RefuseWhiteoutFiles = f.refuseFiles
	n := &normalizer{tw: tar.NewWriter(w), upperfd: upperfd, format: f, lower: lower,
		mtime: time.Unix(0, 0), opaque: map[string]bool{}}
	if opts.Clamp != nil {
		n.mtime = time.Unix(opts.Clamp.Unix(), 0) // as WriteTar's whiteouts
	}
	// WriteTar hands the normalizer its headers directly (one tar
	// encoding, not a tar written, parsed and written again).
	return writeTarTo(ctx, &normSink{n: n}, upper, opts)
}

// normSink is the normalizer as WriteTar's sink: each header goes through
// entry; the body of a regular file it wrote follows it, others' (empty)
// bodies are dropped.
type normSink struct {
	n    *normalizer
	pass bool
}

func (s *normSink) WriteHeader(hdr *tar.Header) error {
	written, err := s.n.entry(hdr)
	if err != nil {
		return fmt.Errorf("%s: %w", hdr.Name, err)
	}
	s.pass = written && hdr.Typeflag == tar.TypeReg
	return nil
}

func (s *normSink) Write(p []byte) (int, error) {
	if s.pass {
		return s.n.tw.Write(p)
	}
	return len(p), nil
}

func (s *normSink) Close() error { return s.n.tw.Close() }

type normalizer struct {
	tw      *tar.Writer
	upperfd int
	format  upperFormat
	lower   lowerFunc
	mtime   time.Time       // of whiteouts
	opaque  map[string]bool // directories of this layer marked opaque
	pending []*tar.Header   // directories held back until something below them is written
}

// entry decides what the tar gets for hdr and writes it (with the held
// directories above it); written says whether hdr itself was written.
func (n *normalizer) entry(hdr *tar.Header) (written bool, err error) {
	rel := strings.TrimSuffix(hdr.Name, "/")
	d, base := splitName(rel)
	// Held directories that are not ancestors of this entry had nothing written below them.
	for len(n.pending) > 0 {
		top := strings.TrimSuffix(n.pending[len(n.pending)-1].Name, "/")
		if strings.HasPrefix(rel, top+"/") {
			break
		}
		n.pending = n.pending[:len(n.pending)-1]
	}
	if strings.HasPrefix(base, whiteoutPrefix) {
		if strings.HasPrefix(base, whiteoutMetaPrefix) {
			return false, nil // on-disk opaque markers (file, or fuse's 0/0 ".wh..opq"): see dirs below
		}
		if n.format.prune && !n.lower(joinName(d, base[len(whiteoutPrefix):])).exists {
			return false, nil
		}
		// Canonical whiteout: its (empty) body is not the one on disk.
		return false, n.write(n.whiteout(rel))
	}
	out := &tar.Header{Typeflag: hdr.Typeflag, Name: hdr.Name, Linkname: hdr.Linkname, Size: hdr.Size,
		Mode: hdr.Mode, Uid: hdr.Uid, Gid: hdr.Gid, ModTime: hdr.ModTime, Devmajor: hdr.Devmajor,
		Devminor: hdr.Devminor, Format: tar.FormatPAX}
	for k, v := range hdr.PAXRecords {
		if strings.HasPrefix(k, paxXattr) {
			if out.PAXRecords == nil {
				out.PAXRecords = map[string]string{}
			}
			out.PAXRecords[k] = v
		}
	}
	if hdr.Typeflag != tar.TypeDir {
		return true, n.write(out)
	}
	fd, err := openBeneath(n.upperfd, rel)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	if !dirOpaque(fd, n.format.opaqueXattrs, n.format.markerFiles) {
		if n.format.prune && n.unchanged(fd, rel) {
			n.pending = append(n.pending, out)
			return false, nil
		}
		return true, n.write(out)
	}
	n.opaque[rel] = true
	if err := n.write(out); err != nil {
		return false, err
	}
	for p, _ := splitName(rel); p != ""; p, _ = splitName(p) {
		if n.opaque[p] {
			return true, nil
		}
	}
	if !n.lower(rel).dir {
		return true, nil // nothing below to hide
	}
	return true, n.write(n.whiteout(joinName(rel, whiteoutOpaque)))
}

// unchanged reports an upper directory equal to the lower one in everything a tar shows.
func (n *normalizer) unchanged(fd int, rel string) bool {
	le := n.lower(rel)
	if !le.known || !le.dir {
		return false
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return false
	}
	if st.Mode != le.st.Mode || st.Uid != le.st.Uid || st.Gid != le.st.Gid || st.Mtim != le.st.Mtim {
		return false
	}
	xs, err := readXattrs(fd, keepXattrInTar)
	return err == nil && slices.EqualFunc(xs, le.xattrs, func(a, b xattr) bool {
		return a.name == b.name && string(a.value) == string(b.value)
	})
}

// write writes hdr after the held directories above it; a regular file's
// body follows through normSink.
func (n *normalizer) write(hdr *tar.Header) error {
	for _, p := range n.pending {
		if err := n.tw.WriteHeader(p); err != nil {
			return err
		}
	}
	n.pending = n.pending[:0]
	return n.tw.WriteHeader(hdr)
}

func (n *normalizer) whiteout(name string) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeReg, ModTime: n.mtime, Format: tar.FormatPAX}
}
