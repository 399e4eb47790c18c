package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ent is one tar entry of a test archive, in the spirit of buildah's copier_test tables.
type ent struct {
	name     string
	typ      byte
	mode     int64
	body     string
	link     string
	uid, gid int
	xattrs   map[string]string
	major    int64
	minor    int64
}

var testTime = time.Date(2020, 2, 2, 20, 20, 20, 0, time.UTC)

func file(name, body string) ent { return ent{name: name, typ: tar.TypeReg, mode: 0o644, body: body} }
func dir(name string) ent        { return ent{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, target string) ent {
	return ent{name: name, typ: tar.TypeSymlink, mode: 0o777, link: target}
}
func hardlink(name, target string) ent { return ent{name: name, typ: tar.TypeLink, link: target} }

// makeTar builds an uncompressed tar in memory.
func makeTar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Uid: e.uid, Gid: e.gid,
			ModTime: testTime, Size: int64(len(e.body)), Devmajor: e.major, Devminor: e.minor, Format: tar.FormatPAX}
		for k, v := range e.xattrs {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords[paxXattr+k] = v
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("write header %s: %v", e.name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tarLines summarises a tar, one line per entry: "type mode uid:gid size mtime name[ -> link] [xattrs] [body]".
func tarLines(t testing.TB, data []byte) []string {
	t.Helper()
	var lines []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return lines
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		body, _ := io.ReadAll(tr)
		l := fmt.Sprintf("%c %04o %d:%d %d %d %s", typeChar(hdr.Typeflag), hdr.Mode, hdr.Uid, hdr.Gid, hdr.Size, hdr.ModTime.Unix(), hdr.Name)
		if hdr.Linkname != "" {
			l += " -> " + hdr.Linkname
		}
		if hdr.Typeflag == tar.TypeChar || hdr.Typeflag == tar.TypeBlock {
			l += fmt.Sprintf(" %d,%d", hdr.Devmajor, hdr.Devminor)
		}
		var xs []string
		for k, v := range hdr.PAXRecords {
			if name, ok := strings.CutPrefix(k, paxXattr); ok {
				xs = append(xs, fmt.Sprintf("%s=%q", name, v))
			}
		}
		slices.Sort(xs)
		if len(xs) > 0 {
			l += " [" + strings.Join(xs, " ") + "]"
		}
		if len(body) > 0 {
			l += fmt.Sprintf(" %q", body)
		}
		if hdr.Uname != "" || hdr.Gname != "" || !hdr.AccessTime.IsZero() || !hdr.ChangeTime.IsZero() {
			l += " NONDETERMINISTIC"
		}
		lines = append(lines, l)
	}
}

func typeChar(t byte) byte {
	switch t {
	case tar.TypeReg:
		return 'f'
	case tar.TypeDir:
		return 'd'
	case tar.TypeSymlink:
		return 'l'
	case tar.TypeLink:
		return 'h'
	case tar.TypeChar:
		return 'c'
	case tar.TypeBlock:
		return 'b'
	case tar.TypeFifo:
		return 'p'
	}
	return '?'
}

// treeLines summarises a directory tree, one line per entry in path order (root excluded):
// "type mode uid:gid name[ -> link] [xattrs] [body] [#n: nth hard-linked inode]".
func treeLines(t testing.TB, root string) []string {
	t.Helper()
	var lines []string
	inodes := map[uint64]int{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		typ := map[uint32]byte{unix.S_IFREG: 'f', unix.S_IFDIR: 'd', unix.S_IFLNK: 'l', unix.S_IFCHR: 'c',
			unix.S_IFBLK: 'b', unix.S_IFIFO: 'p', unix.S_IFSOCK: 's'}[st.Mode&unix.S_IFMT]
		uid, gid := st.Uid, st.Gid
		if !isRoot() && uid == uint32(os.Geteuid()) && gid == uint32(os.Getegid()) {
			uid, gid = 0, 0
		}
		l := fmt.Sprintf("%c %04o %d:%d %s", typ, st.Mode&0o7777, uid, gid, rel)
		switch typ {
		case 'd':
			l += "/"
		case 'l':
			target, _ := os.Readlink(p)
			l += " -> " + target
		case 'c', 'b':
			l += fmt.Sprintf(" %d,%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		if typ == 'f' || typ == 'd' {
			if xs := userXattrs(t, p); xs != "" {
				l += " [" + xs + "]"
			}
		}
		if typ == 'f' {
			body, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if len(body) > 0 {
				l += fmt.Sprintf(" %q", body)
			}
			if st.Nlink > 1 {
				if _, ok := inodes[st.Ino]; !ok {
					inodes[st.Ino] = len(inodes) + 1
				}
				l += fmt.Sprintf(" #%d", inodes[st.Ino])
			}
		}
		lines = append(lines, l)
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return lines
}

func userXattrs(t testing.TB, p string) string {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	defer unix.Close(fd)
	xs, err := readXattrs(fd, func(string) bool { return true })
	if err != nil {
		t.Fatalf("xattrs of %s: %v", p, err)
	}
	var out []string
	for _, x := range xs {
		out = append(out, fmt.Sprintf("%s=%q", x.name, x.value))
	}
	return strings.Join(out, " ")
}

func diffLines(t testing.TB, what string, want, got []string) {
	t.Helper()
	if slices.Equal(want, got) {
		return
	}
	t.Errorf("%s mismatch\nwant:\n\t%s\ngot:\n\t%s", what, strings.Join(want, "\n\t"), strings.Join(got, "\n\t"))
}

func isRoot() bool { return os.Geteuid() == 0 }

// requireRoot skips a test that needs real privileges, but only when not root: CI runs as root, and
// there a failure to mknod or chown is a bug, not a reason to skip.
func requireRoot(t testing.TB, why string) {
	t.Helper()
	if !isRoot() {
		t.Skipf("needs root: %s", why)
	}
}

// apply runs Apply and checks the byte count. Unprivileged, it tolerates failing chowns, and treeLines
// shows the caller's own ids as 0, so the same expectations hold as root and as a user.
func apply(t testing.TB, root string, data []byte, opts ApplyOptions) error {
	t.Helper()
	if !isRoot() {
		opts.IgnoreChownErrors = true
	}
	n, err := Apply(context.Background(), root, bytes.NewReader(data), opts)
	if err == nil && n != int64(len(data)) {
		t.Errorf("Apply read %d bytes, want %d", n, len(data))
	}
	return err
}

func writeTar(t testing.TB, dir string, opts WriteOptions) []byte {
	t.Helper()
	if !isRoot() && opts.MapOwner == nil {
		opts.MapOwner = func(uid, gid int) (int, int) { // as treeLines does for trees
			if uid == os.Geteuid() && gid == os.Getegid() {
				return 0, 0
			}
			return uid, gid
		}
	}
	var buf bytes.Buffer
	if err := WriteTar(context.Background(), &buf, dir, opts); err != nil {
		t.Fatalf("WriteTar: %v", err)
	}
	return buf.Bytes()
}

func mustDo(t testing.TB, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, fs.ErrExist) {
		t.Fatal(err)
	}
}

func setXattr(t testing.TB, p, name, value string) {
	t.Helper()
	if err := unix.Lsetxattr(p, name, []byte(value), 0); err != nil {
		t.Fatalf("setxattr %s %s: %v", p, name, err)
	}
}

// mtimes maps each path under root to its mtime in nanoseconds.
func mtimes(t testing.TB, root string) map[string]int64 {
	t.Helper()
	m := map[string]int64{}
	mustDo(t, filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		m[rel] = st.Mtim.Nano()
		return nil
	}))
	return m
}

func sameMtimes(t testing.TB, want, got string) {
	t.Helper()
	w, g := mtimes(t, want), mtimes(t, got) // entries missing from got are treeLines' business
	delete(w, ".")
	delete(g, ".")
	for p, wt := range w {
		if gt, ok := g[p]; ok && gt != wt {
			t.Errorf("%s: mtime %d, want %d", p, g[p], wt)
		}
	}
}
