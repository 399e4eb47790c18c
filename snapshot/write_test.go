package snapshot

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// capNetBindService is a VFS_CAP_REVISION_2 security.capability value granting CAP_NET_BIND_SERVICE.
func capNetBindService() string {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000001) // revision 2, effective
	binary.LittleEndian.PutUint32(b[4:], 1<<10)      // permitted: CAP_NET_BIND_SERVICE
	return string(b)
}

// buildTree makes the fixture most writer tests share. Only root can chown, mknod and set capabilities,
// so the rest of the tree stays usable without it.
func buildTree(t *testing.T, dir string, mtime time.Time) {
	t.Helper()
	mk := func(rel string, body string, mode os.FileMode) {
		p := filepath.Join(dir, rel)
		mustDo(t, os.MkdirAll(filepath.Dir(p), 0o755))
		mustDo(t, os.WriteFile(p, []byte(body), mode))
		mustDo(t, os.Chmod(p, mode))
	}
	mk("etc/passwd", "root:x:0:0\n", 0o644)
	mustDo(t, os.Link(filepath.Join(dir, "etc/passwd"), filepath.Join(dir, "etc/passwd-")))
	mk("bin/busybox", "#!", 0o755)
	mustDo(t, os.Symlink("busybox", filepath.Join(dir, "bin/sh")))
	mk("bin/su", "su", 0o4755|os.ModeSetuid)
	mustDo(t, os.Chmod(filepath.Join(dir, "bin/su"), 0o755|os.ModeSetuid))
	mustDo(t, os.MkdirAll(filepath.Join(dir, "tmp"), 0o755))
	mustDo(t, os.Chmod(filepath.Join(dir, "tmp"), 0o777|os.ModeSticky))
	mk("data/x", "x", 0o600)
	setXattr(t, filepath.Join(dir, "data/x"), "user.mime", "text/plain")
	setXattr(t, filepath.Join(dir, "data/x"), "user.overlay.origin", "dropped")
	setXattr(t, filepath.Join(dir, "data"), "user.dir", "kept")
	long := strings.Repeat("long-directory-name/", 8) + "file"
	mk(long, "deep", 0o644)
	mustDo(t, unix.Mkfifo(filepath.Join(dir, "run-fifo"), 0o600))
	l, err := net.Listen("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if isRoot() {
		mustDo(t, unix.Mknod(filepath.Join(dir, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		mustDo(t, os.Chmod(filepath.Join(dir, "null"), 0o666))
		mustDo(t, os.Lchown(filepath.Join(dir, "data/x"), 1000, 1001))
		setXattr(t, filepath.Join(dir, "bin/busybox"), "security.capability", capNetBindService())
		setXattr(t, filepath.Join(dir, "bin/busybox"), "trusted.secret", "dropped")
		mustDo(t, os.Chmod(filepath.Join(dir, "bin/su"), 0o755|os.ModeSetuid)) // chown-free, but be explicit
	}
	// mtimes last: every write above moved its parent's
	mustDo(t, filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}, unix.AT_SYMLINK_NOFOLLOW)
	}))
}

func TestWriteTarGolden(t *testing.T) {
	t.Parallel()
	requireRoot(t, "the fixture has a device node, a foreign owner and a file capability")
	dir := t.TempDir()
	mtime := time.Unix(1600000000, 999999999) // nanoseconds must be truncated, not rounded
	buildTree(t, dir, mtime)
	long := strings.Repeat("long-directory-name/", 8)
	var want []string
	want = append(want,
		"d 0755 0:0 0 1600000000 bin/",
		`f 0755 0:0 2 1600000000 bin/busybox [security.capability="\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"] "#!"`,
		"l 0777 0:0 0 1600000000 bin/sh -> busybox",
		`f 4755 0:0 2 1600000000 bin/su "su"`,
		`d 0755 0:0 0 1600000000 data/ [user.dir="kept"]`,
		`f 0600 1000:1001 1 1600000000 data/x [user.mime="text/plain"] "x"`,
		"d 0755 0:0 0 1600000000 etc/",
		`f 0644 0:0 11 1600000000 etc/passwd "root:x:0:0\n"`,
		"h 0644 0:0 0 1600000000 etc/passwd- -> etc/passwd",
	)
	for i := 1; i <= 8; i++ {
		want = append(want, "d 0755 0:0 0 1600000000 "+strings.Repeat("long-directory-name/", i))
	}
	want = append(want,
		`f 0644 0:0 4 1600000000 `+long+`file "deep"`,
		"c 0666 0:0 0 1600000000 null 1,3",
		"p 0600 0:0 0 1600000000 run-fifo",
		"d 1777 0:0 0 1600000000 tmp/",
	)
	got := writeTar(t, dir, WriteOptions{})
	diffLines(t, "tar", want, tarLines(t, got))

	// Clamp and MapOwner.
	clamp := time.Unix(1500000000, 5)
	got = writeTar(t, dir, WriteOptions{Clamp: &clamp, MapOwner: func(u, g int) (int, int) { return u + 10, g + 20 }})
	for i, l := range tarLines(t, got) {
		if !strings.Contains(l, " 1500000000 ") {
			t.Errorf("entry %d not clamped: %s", i, l)
		}
		if !strings.Contains(l, " 10:20 ") && !strings.Contains(l, " 1010:1021 ") {
			t.Errorf("entry %d not mapped: %s", i, l)
		}
	}
}

// Identical trees built at different times in different places give byte-identical tars under Clamp.
func TestWriteTarDeterministic(t *testing.T) {
	t.Parallel()
	a, b := t.TempDir(), t.TempDir()
	buildTree(t, a, time.Unix(1700000000, 0))
	// b gets its entries created in another order, so inode numbers and readdir order differ too.
	mustDo(t, os.MkdirAll(filepath.Join(b, "zz-first"), 0o755))
	buildTree(t, b, time.Unix(1800000000, 12345))
	mustDo(t, os.Remove(filepath.Join(b, "zz-first")))
	mustDo(t, unix.UtimesNanoAt(unix.AT_FDCWD, b, []unix.Timespec{{Sec: 1800000000}, {Sec: 1800000000}}, 0))
	clamp := time.Unix(1650000000, 0)
	ta := writeTar(t, a, WriteOptions{Clamp: &clamp})
	tb := writeTar(t, b, WriteOptions{Clamp: &clamp})
	if !bytes.Equal(ta, tb) {
		diffLines(t, "tars of identical trees", tarLines(t, ta), tarLines(t, tb))
		t.Fatal("identical trees gave different bytes")
	}
}

func TestWriteTarInclude(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	buildTree(t, dir, time.Unix(1600000000, 0))
	got := writeTar(t, dir, WriteOptions{Include: []string{"etc/passwd", "/data", "bin/sh"}})
	want := []string{
		"d 0755 0:0 0 1600000000 bin/",
		"l 0777 0:0 0 1600000000 bin/sh -> busybox",
		`d 0755 0:0 0 1600000000 data/ [user.dir="kept"]`,
		"DATA_X",
		"d 0755 0:0 0 1600000000 etc/",
		`f 0644 0:0 11 1600000000 etc/passwd "root:x:0:0\n"`,
	}
	lines := tarLines(t, got)
	if len(lines) == len(want) {
		want[3] = lines[3] // owner differs with and without root
	}
	diffLines(t, "included tar", want, lines)

	for _, inc := range [][]string{{"nope"}, {"etc/passwd/x"}, {"../etc"}, {"etc/nope"}} {
		err := WriteTar(context.Background(), &bytes.Buffer{}, dir, WriteOptions{Include: inc})
		if err == nil {
			t.Errorf("Include %q: no error", inc)
		}
	}
}

// An overlay upper dir: 0/0 devices are whiteouts, opaque directories get a marker only when the lower
// layers had them, and overlay xattrs vanish.
func TestWriteTarOverlay(t *testing.T) {
	t.Parallel()
	for _, prefix := range []string{"user.overlay.", "trusted.overlay."} {
		t.Run(prefix, func(t *testing.T) {
			t.Parallel()
			if strings.HasPrefix(prefix, "trusted.") && !isRoot() {
				t.Skip("trusted.* xattrs need CAP_SYS_ADMIN")
			}
			upper := t.TempDir()
			mk := func(rel string) string {
				p := filepath.Join(upper, rel)
				mustDo(t, os.MkdirAll(p, 0o755))
				return p
			}
			mk("etc")
			mustDo(t, os.WriteFile(filepath.Join(upper, "etc/new"), []byte("n"), 0o644))
			setXattr(t, mk("var/lib/apt"), prefix+"opaque", "y")
			setXattr(t, mk("var/lib/apt/lists"), prefix+"opaque", "y") // under an opaque dir: no marker
			setXattr(t, mk("fresh"), prefix+"opaque", "y")             // not in lower: no marker
			setXattr(t, mk("etc"), prefix+"origin", "x")
			setXattr(t, mk("etc"), "user.keep", "k")
			err := unix.Mknod(filepath.Join(upper, "etc/removed"), unix.S_IFCHR, 0)
			if errors.Is(err, unix.EPERM) && !isRoot() {
				t.Skip("mknod of a whiteout device needs root or a user namespace")
			}
			mustDo(t, err)
			// The kernel links whiteouts to one shared inode: they must not turn into hard links.
			mustDo(t, os.Link(filepath.Join(upper, "etc/removed"), filepath.Join(upper, "etc/also-removed")))
			mustDo(t, filepath.Walk(upper, func(p string, _ os.FileInfo, err error) error {
				mustDo(t, err)
				return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{{Sec: 1600000000}, {Sec: 1600000000}}, unix.AT_SYMLINK_NOFOLLOW)
			}))
			lower := map[string]bool{"etc": true, "var": true, "var/lib": true, "var/lib/apt": true, "var/lib/apt/lists": true}
			got := writeTar(t, upper, WriteOptions{Overlay: &OverlayOptions{
				XattrPrefix: prefix, LowerHasDir: func(rel string) bool { return lower[rel] }}})
			want := []string{
				`d 0755 0:0 0 1600000000 etc/ [user.keep="k"]`,
				"f 0000 0:0 0 0 etc/.wh.also-removed",
				"f 0000 0:0 0 0 etc/.wh.removed",
				`f 0644 0:0 1 1600000000 etc/new "n"`,
				"d 0755 0:0 0 1600000000 fresh/",
				"d 0755 0:0 0 1600000000 var/",
				"d 0755 0:0 0 1600000000 var/lib/",
				"d 0755 0:0 0 1600000000 var/lib/apt/",
				"f 0000 0:0 0 0 var/lib/apt/.wh..wh..opq",
				"d 0755 0:0 0 1600000000 var/lib/apt/lists/",
			}
			diffLines(t, "overlay tar", want, tarLines(t, got))

			// Whiteouts take the clamp as their time.
			clamp := time.Unix(1234, 0)
			for _, l := range tarLines(t, writeTar(t, upper, WriteOptions{Clamp: &clamp, Overlay: &OverlayOptions{XattrPrefix: prefix}})) {
				if strings.Contains(l, ".wh.") && !strings.Contains(l, " 1234 ") {
					t.Errorf("whiteout not clamped: %s", l)
				}
			}
		})
	}
}

// Without Overlay a 0/0 device is content like any other device.
func TestWriteTarPlainDevice(t *testing.T) {
	t.Parallel()
	requireRoot(t, "mknod")
	dir := t.TempDir()
	mustDo(t, unix.Mknod(filepath.Join(dir, "dev0"), unix.S_IFCHR|0o600, 0))
	lines := tarLines(t, writeTar(t, dir, WriteOptions{}))
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "c 0600 ") || !strings.HasSuffix(lines[0], " dev0 0,0") {
		t.Errorf("got %q", lines)
	}
}

func TestWriteTarCancel(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	buildTree(t, dir, time.Unix(1600000000, 0))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := WriteTar(ctx, &bytes.Buffer{}, dir, WriteOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("WriteTar after cancel = %v, want context.Canceled", err)
	}
}

// GNU tar, an independent implementation, extracts our layer to the same tree our Apply makes.
func TestWriteTarGNUTarAgrees(t *testing.T) {
	t.Parallel()
	requireRoot(t, "extracting owners and devices")
	gnutar, err := exec.LookPath("tar")
	if err != nil {
		t.Fatalf("tar is needed (hack/install-deps.sh installs it): %v", err)
	}
	src := t.TempDir()
	buildTree(t, src, time.Unix(1600000000, 0))
	layer := writeTar(t, src, WriteOptions{})
	ours, theirs := t.TempDir(), t.TempDir()
	mustDo(t, apply(t, ours, layer, ApplyOptions{}))
	cmd := exec.Command(gnutar, "--xattrs", "--xattrs-include=*", "--numeric-owner", "-p", "-xf", "-", "-C", theirs)
	cmd.Stdin = bytes.NewReader(layer)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	diffLines(t, "Apply vs GNU tar", treeLines(t, theirs), treeLines(t, ours))
	sameMtimes(t, theirs, ours)
}
