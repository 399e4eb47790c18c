package snapshot

import (
	"archive/tar"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMerge(t *testing.T) {
	t.Parallel()
	outer := t.TempDir()
	root := filepath.Join(outer, "root")
	upper := filepath.Join(outer, "upper")
	mustDo(t, os.MkdirAll(root, 0o755))
	mustDo(t, os.MkdirAll(upper, 0o700))
	mustDo(t, apply(t, root, makeTar(t,
		dir("usr/"), dir("usr/lib/"), file("usr/lib/old", "o"), symlink("lib", "usr/lib"), symlink("esc", "/"),
		symlink("out", "../.."), dir("app/"), file("app/keep", "k"), file("app/file", "old"), dir("app/dir/"),
		file("app/dir/x", "x"), file("etc", "a file"), ent{name: "shared/", typ: tar.TypeDir, mode: 0o700}), ApplyOptions{}))
	mustDo(t, apply(t, upper, makeTar(t,
		file("lib/new", "n"), file("esc/etc/f", "f"), file("out/g", "g"), file("app/file", "new"), file("app/dir", "now a file"),
		dir("etc/"), file("etc/conf", "c"), ent{name: "shared/", typ: tar.TypeDir, mode: 0o751}, file("shared/s", "s"),
		hardlink("shared/s2", "shared/s")), ApplyOptions{}))
	mustDo(t, Merge(context.Background(), upper, root))
	want := []string{
		"d 0755 0:0 app/", `f 0644 0:0 app/dir "now a file"`, `f 0644 0:0 app/file "new"`, `f 0644 0:0 app/keep "k"`,
		"l 0777 0:0 esc -> /", "d 0755 0:0 etc/", `f 0644 0:0 etc/conf "c"`, `f 0644 0:0 etc/f "f"`, `f 0644 0:0 g "g"`,
		"l 0777 0:0 lib -> usr/lib", "l 0777 0:0 out -> ../..", "d 0751 0:0 shared/", `f 0644 0:0 shared/s "s" #1`,
		`f 0644 0:0 shared/s2 "s" #1`, "d 0755 0:0 usr/", "d 0755 0:0 usr/lib/", `f 0644 0:0 usr/lib/new "n"`,
		`f 0644 0:0 usr/lib/old "o"`,
	}
	diffLines(t, "merged root", want, treeLines(t, root))
	if left := treeLines(t, upper); len(left) != 0 {
		t.Errorf("upper not emptied: %q", left)
	}
	names, _ := os.ReadDir(outer)
	if len(names) != 2 {
		t.Errorf("Merge wrote outside root: %v", names)
	}
	var st unix.Stat_t
	mustDo(t, unix.Stat(filepath.Join(root, "shared"), &st))
	if st.Mtim.Sec != testTime.Unix() {
		t.Errorf("merged dir mtime = %d, want upper's %d", st.Mtim.Sec, testTime.Unix())
	}
}

func TestCopyTree(t *testing.T) {
	t.Parallel()
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "copy")
	buildTree(t, src, time.Unix(1600000000, 0))
	mustDo(t, CopyTree(context.Background(), src, dst, ApplyOptions{}))
	// Sockets are skipped and overlay bookkeeping xattrs are not carried.
	want := slices.DeleteFunc(treeLines(t, src), func(l string) bool { return l[0] == 's' })
	for i, l := range want {
		want[i] = strings.ReplaceAll(l, ` user.overlay.origin="dropped"`, "")
	}
	diffLines(t, "copied tree", want, treeLines(t, dst))
	sameMtimes(t, src, dst)
	// Same tar, hard links, capabilities, root mtime and all.
	diffLines(t, "tar of copy", tarLines(t, writeTar(t, src, WriteOptions{})), tarLines(t, writeTar(t, dst, WriteOptions{})))
	var a, b unix.Stat_t
	mustDo(t, unix.Stat(src, &a))
	mustDo(t, unix.Stat(dst, &b))
	if a.Mtim != b.Mtim || a.Mode != b.Mode {
		t.Errorf("root metadata not copied: %v/%o vs %v/%o", a.Mtim, a.Mode, b.Mtim, b.Mode)
	}
	// A second copy over the first replaces and merges without error.
	mustDo(t, CopyTree(context.Background(), src, dst, ApplyOptions{}))
	diffLines(t, "recopied tree", want, treeLines(t, dst))
}

// Merge across filesystems copies instead of renaming, hard links included.
func TestMergeAcrossFilesystems(t *testing.T) {
	t.Parallel()
	shm, err := os.MkdirTemp("/dev/shm", "merge")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	var a, b unix.Stat_t
	root := t.TempDir()
	mustDo(t, unix.Stat(shm, &a))
	mustDo(t, unix.Stat(root, &b))
	if a.Dev == b.Dev {
		t.Skip("/dev/shm and the test temp dir share a filesystem")
	}
	mustDo(t, apply(t, root, makeTar(t, dir("d/"), file("d/old", "o"), file("x", "old x")), ApplyOptions{}))
	mustDo(t, apply(t, shm, makeTar(t, dir("d/"), file("d/new", "n"), hardlink("d/new2", "d/new"), file("x", "new x"),
		dir("n/"), file("n/f", "f"), symlink("n/l", "f")), ApplyOptions{}))
	mustDo(t, Merge(context.Background(), shm, root))
	want := []string{"d 0755 0:0 d/", `f 0644 0:0 d/new "n" #1`, `f 0644 0:0 d/new2 "n" #1`, `f 0644 0:0 d/old "o"`,
		"d 0755 0:0 n/", `f 0644 0:0 n/f "f"`, "l 0777 0:0 n/l -> f", `f 0644 0:0 x "new x"`}
	diffLines(t, "merged root", want, treeLines(t, root))
	if left := treeLines(t, shm); len(left) != 0 {
		t.Errorf("upper not emptied: %q", left)
	}
}
