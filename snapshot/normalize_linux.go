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
// TODO: fold into WriteTar (see the report) to save the second tar pass.
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
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := WriteTar(ctx, pw, upper, opts)
		pw.CloseWithError(err)
		done <- err
	}()
	n := &normalizer{tw: tar.NewWriter(w), upperfd: upperfd, format: f, lower: lower,
		mtime: time.Unix(0, 0), opaque: map[string]bool{}}
	if opts.Clamp != nil {
		n.mtime = time.Unix(opts.Clamp.Unix(), 0) // as WriteTar's whiteouts
	}
	nerr := n.run(pr)
	if nerr == nil {
		io.Copy(io.Discard, pr) // whatever follows the end-of-archive blocks
	} else {
		pr.CloseWithError(nerr) // unblocks WriteTar
	}
	if werr := <-done; werr != nil {
		return werr
	}
	return nerr
}

type normalizer struct {
	tw      *tar.Writer
	upperfd int
	format  upperFormat
	lower   lowerFunc
	mtime   time.Time       // of whiteouts
	opaque  map[string]bool // directories of this layer marked opaque
	pending []*tar.Header   // directories held back until something below them is written
	buf     []byte          // one copy buffer for every body (io.Copy would allocate one per file)
}

func (n *normalizer) run(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return n.tw.Close()
		}
		if err != nil {
			return err
		}
		if err := n.entry(hdr, tr); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}
}

func (n *normalizer) entry(hdr *tar.Header, body io.Reader) error {
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
			return nil // on-disk opaque markers (file, or fuse's 0/0 ".wh..opq"): see dirs below
		}
		if n.format.prune && !n.lower(joinName(d, base[len(whiteoutPrefix):])).exists {
			return nil
		}
		return n.write(n.whiteout(rel), nil)
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
		return n.write(out, body)
	}
	fd, err := openBeneath(n.upperfd, rel)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if !dirOpaque(fd, n.format.opaqueXattrs, n.format.markerFiles) {
		if n.format.prune && n.unchanged(fd, rel) {
			n.pending = append(n.pending, out)
			return nil
		}
		return n.write(out, nil)
	}
	n.opaque[rel] = true
	if err := n.write(out, nil); err != nil {
		return err
	}
	for p, _ := splitName(rel); p != ""; p, _ = splitName(p) {
		if n.opaque[p] {
			return nil
		}
	}
	if !n.lower(rel).dir {
		return nil // nothing below to hide
	}
	return n.write(n.whiteout(joinName(rel, whiteoutOpaque)), nil)
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

// write writes hdr (and body for a regular file) after the held directories above it.
func (n *normalizer) write(hdr *tar.Header, body io.Reader) error {
	for _, p := range n.pending {
		if err := n.tw.WriteHeader(p); err != nil {
			return err
		}
	}
	n.pending = n.pending[:0]
	if err := n.tw.WriteHeader(hdr); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeReg && body != nil {
		if n.buf == nil {
			n.buf = make([]byte, 64<<10)
		}
		_, err := io.CopyBuffer(struct{ io.Writer }{n.tw}, struct{ io.Reader }{body}, n.buf)
		return err
	}
	return nil
}

func (n *normalizer) whiteout(name string) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeReg, ModTime: n.mtime, Format: tar.FormatPAX}
}
