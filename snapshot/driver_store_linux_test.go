package snapshot

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"golang.org/x/sys/unix"
)

// A temp dir left by a killed extraction is removed, never used; a layer another builder
// published first is adopted.
func TestLayerStoreTornAndRace(t *testing.T) {
	root := t.TempDir()
	l1, _ := baseLayers(t)
	hexd := l1.DiffID.Encoded()
	torn := filepath.Join(root, "layers", ".tmp-"+hexd+"-dead")
	mustDo(t, os.MkdirAll(filepath.Join(torn, "etc"), 0o755))
	s, err := openLayerStore(root, "user.overlay.", ApplyOptions{NoChown: !isRoot()}, Options{}.logger())
	mustDo(t, err)
	if _, err := os.Stat(torn); !os.IsNotExist(err) {
		t.Errorf("torn temp dir kept: %v", err)
	}
	p, err := s.get(context.Background(), l1.Layer)
	mustDo(t, err)
	if _, err := os.Stat(filepath.Join(p, "etc/passwd")); err != nil || l1.opens.Load() != 1 {
		t.Errorf("layer not extracted (%d opens): %v", l1.opens.Load(), err)
	}
	// Lost race: our copy goes, theirs stays.
	mine := filepath.Join(root, "layers", ".tmp-mine")
	mustDo(t, os.MkdirAll(filepath.Join(mine, "other"), 0o755))
	mustDo(t, publishDir(mine, p))
	if _, err := os.Stat(mine); !os.IsNotExist(err) {
		t.Errorf("losing copy kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(p, "etc/passwd")); err != nil {
		t.Errorf("winner's layer damaged: %v", err)
	}
	if _, err := openLayerStore(root, "trusted.overlay.", ApplyOptions{}, Options{}.logger()); err == nil {
		t.Error("a store of user.overlay. markers opened for trusted.overlay.")
	}
}

// Extraction converts OCI whiteouts into overlay ones.
func TestExtractOverlay(t *testing.T) {
	dst := t.TempDir()
	data := makeTar(t, dir("a/"), file("a/.wh.gone", ""), file("a/.wh..wh..opq", ""), file("a/keep", "k"),
		file(".wh.top", ""), file("b/.wh.both", ""), file("b/both", "x"), file("c/.wh..wh.plnk", ""))
	_, err := extractOverlay(context.Background(), dst, bytes.NewReader(data), ApplyOptions{NoChown: !isRoot()}, "user.overlay.")
	mustDo(t, err)
	var got []string
	mustDo(t, filepath.Walk(dst, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dst {
			return err
		}
		rel, _ := filepath.Rel(dst, p)
		var st unix.Stat_t
		mustDo(t, unix.Lstat(p, &st))
		l := rel
		if isWhiteoutDev(&st) {
			l += " whiteout"
		}
		if v, err := getXattrPath(p, "user.overlay.opaque"); err == nil {
			l += " opaque=" + string(v)
		}
		got = append(got, l)
		return nil
	}))
	diffLines(t, "extracted", []string{"a opaque=y", "a/gone whiteout", "a/keep", "b", "b/both", "c", "top whiteout"}, got)
	bad := makeTar(t, file(".wh.x/y", ""))
	if _, err := extractOverlay(context.Background(), t.TempDir(), bytes.NewReader(bad), ApplyOptions{NoChown: !isRoot()}, "user.overlay."); err == nil {
		t.Error("a whiteout name used as a directory was accepted")
	}
}

// The normalizer gives a fuse-overlayfs style upper dir (".wh." files, marker file plus 0/0
// ".wh..opq", fuse-overlayfs's xattr, new directories marked opaque, whiteouts of names never
// below, directories copied up unchanged) the bytes WriteTar gives the kernel style upper dir of
// the same changes.
func TestNormalizeFuseUpper(t *testing.T) {
	kernel, fuse, lower := t.TempDir(), t.TempDir(), t.TempDir()
	mustDo(t, os.MkdirAll(filepath.Join(lower, "old/sub"), 0o755))
	mustDo(t, os.MkdirAll(filepath.Join(lower, "keep"), 0o755))
	mustDo(t, os.WriteFile(filepath.Join(lower, "keep/gone"), nil, 0o644))
	for _, up := range []string{lower, kernel, fuse} {
		mustDo(t, os.Mkdir(filepath.Join(up, "same2"), 0o755))
	}
	for _, up := range []string{kernel, fuse} {
		for _, d := range []string{"old", "new", "keep", "old/sub"} {
			mustDo(t, os.Mkdir(filepath.Join(up, d), 0o755))
		}
		mustDo(t, os.WriteFile(filepath.Join(up, "old/f"), []byte("f"), 0o644))
		mustDo(t, os.WriteFile(filepath.Join(up, "-x"), []byte("sorts before ."), 0o644))
		mustDo(t, os.WriteFile(filepath.Join(up, "same2/c"), []byte("c"), 0o644))
	}
	mustDo(t, unix.Mknod(filepath.Join(kernel, "keep/gone"), unix.S_IFCHR, 0))
	setXattr(t, filepath.Join(kernel, "old"), "user.overlay.opaque", "y")
	mustDo(t, os.WriteFile(filepath.Join(fuse, "keep/.wh.gone"), nil, 0o700))
	mustDo(t, os.WriteFile(filepath.Join(fuse, ".wh.never"), nil, 0o700)) // nothing below to hide
	for _, d := range []string{"old", "new", "old/sub"} {
		mustDo(t, os.WriteFile(filepath.Join(fuse, d, whiteoutOpaque), nil, 0o700))
		mustDo(t, unix.Mknod(filepath.Join(fuse, d, ".wh..opq"), unix.S_IFCHR, 0))
		setXattr(t, filepath.Join(fuse, d), "user.fuseoverlayfs.opaque", "y")
	}
	for _, up := range []string{lower, fuse} { // copied up, not changed
		mustDo(t, os.Mkdir(filepath.Join(up, "same"), 0o750))
		setXattr(t, filepath.Join(up, "same"), "user.k", "v")
	}
	for _, up := range []string{lower, kernel, fuse} { // the same directory times on every side
		for _, d := range []string{"old", "new", "keep", "old/sub", "same", "same2"} {
			if _, err := os.Stat(filepath.Join(up, d)); err == nil {
				mustDo(t, os.Chtimes(filepath.Join(up, d), testTime, testTime))
			}
		}
	}
	lowerOf := layersLower([]string{lower}, opaqueXattrs)
	hasDir := func(rel string) bool { return lowerOf(rel).dir }
	for _, clamp := range []*time.Time{nil, &clampLater} {
		want := writeTar(t, kernel, WriteOptions{Clamp: clamp, Overlay: &OverlayOptions{XattrPrefix: "user.overlay.", LowerHasDir: hasDir}})
		var got bytes.Buffer
		o := ownerOpts(time.Time{})
		o.Clamp = clamp
		f := upperFormat{opaqueXattrs: opaqueXattrs, markerFiles: true, prune: true}
		mustDo(t, writeUpper(context.Background(), &got, fuse, o, f, lowerOf))
		diffLines(t, "normalized", tarLines(t, want), tarLines(t, got.Bytes()))
		if !bytes.Equal(want, got.Bytes()) {
			t.Error("normalized tar differs in bytes")
		}
	}
	// Committing converts the markers in place.
	mustDo(t, normalizeUpper(context.Background(), fuse, "user.overlay."))
	var st unix.Stat_t
	mustDo(t, unix.Lstat(filepath.Join(fuse, "keep/gone"), &st))
	if !isWhiteoutDev(&st) {
		t.Error("keep/gone is not a whiteout device")
	}
	for _, p := range []string{"keep/.wh.gone", "old/" + whiteoutOpaque, "old/.wh..opq"} {
		if _, err := os.Lstat(filepath.Join(fuse, p)); !os.IsNotExist(err) {
			t.Errorf("%s left: %v", p, err)
		}
	}
	if v, err := getXattrPath(filepath.Join(fuse, "old"), "user.overlay.opaque"); err != nil || string(v) != "y" {
		t.Errorf("old not opaque: %q %v", v, err)
	}
	var fi unix.Stat_t
	mustDo(t, unix.Lstat(filepath.Join(fuse, "old"), &fi))
	if fi.Mtim.Sec != testTime.Unix() {
		t.Errorf("old's mtime moved to %d", fi.Mtim.Sec)
	}
}

// More layers than fit in one page of mount options, under a long root.
func TestOverlayManyLayers(t *testing.T) {
	if !isRoot() {
		t.Skip("kernel overlayfs needs root or a user namespace; TestDriversUserNS covers the unprivileged runs")
	}
	root := filepath.Join(t.TempDir(), strings.Repeat("long-directory-name/", 6))
	d, err := NewOverlay(root, Options{})
	mustDo(t, err)
	var layers []Layer
	var lowers []string
	for i := range 90 {
		l := newMemLayer(makeTar(t, dir("d/"), file("d/"+strconv.Itoa(i), strconv.Itoa(i))))
		layers = append(layers, l.Layer)
		lowers = append(lowers, filepath.Join(root, "layers", l.DiffID.Encoded()))
	}
	if n := len(d.(*overlayDriver).kernelOptions(lowers, "u", "w")); n < os.Getpagesize() {
		t.Fatalf("options only %d bytes: the test does not exercise the long form", n)
	}
	m, err := d.Prepare(context.Background(), layers)
	mustDo(t, err)
	ents, err := os.ReadDir(filepath.Join(m.Root(), "d"))
	mustDo(t, err)
	if len(ents) != 90 {
		t.Errorf("%d entries, want 90", len(ents))
	}
	mustDo(t, m.Release())
	checkClean(t, root)
}

func TestDetectAndOpen(t *testing.T) {
	root := t.TempDir()
	d, err := Detect(root, nil)
	mustDo(t, err)
	want := []string{"copy"}
	switch {
	case isRoot():
		want = []string{"overlay"}
	case unix.Access("/dev/fuse", unix.R_OK|unix.W_OK) == nil:
		// A plain user with /dev/fuse (0666, as distributions ship it)
		// mounts fuse-overlayfs through the setuid fusermount3.
		want = []string{"fuse-overlayfs", "copy"}
	}
	if !slices.Contains(want, d.Name()) {
		t.Errorf("Detect chose %s, want one of %v", d.Name(), want)
	}
	if d, err := Open("vfs", root); err != nil || d.Name() != "copy" {
		t.Errorf("Open(vfs): %v", err)
	}
	if _, err := Open("aufs", root); err == nil {
		t.Error("Open(aufs) succeeded")
	}
	checkClean(t, root)
}

var nestedRE = regexp.MustCompile(`--- (PASS|FAIL|SKIP): (\S+)`)

// nestedEnvVar marks a run of this test binary that TestDriversUserNS started.
const nestedEnvVar = "BUILDER_SNAPSHOT_NESTED"

// TestDriversUserNS runs the driver tests again where builder really runs: as root inside a user
// namespace (identity-mapped, so /dev/fuse stays usable), as the unprivileged buildertest user in
// a user namespace with its subordinate ids (the rootless case), and as buildertest without one
// (--isolation=chroot in a pod: copy only). It must start as real root.
func TestDriversUserNS(t *testing.T) {
	if os.Getenv(nestedEnvVar) != "" || inUserNS() || os.Geteuid() != 0 {
		t.Skip("starts as real root")
	}
	dir, err := os.MkdirTemp("", "snapshot-userns-")
	mustDo(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	mustDo(t, os.Chmod(dir, 0o755))
	self, err := os.Executable()
	mustDo(t, err)
	bin := filepath.Join(dir, "snapshot.test")
	data, err := os.ReadFile(self)
	mustDo(t, err)
	mustDo(t, os.WriteFile(bin, data, 0o755))
	const tests = "^(TestEmptyStack|TestDriverMatrix|TestDriverConcurrentPrepare|TestStaleSnapshotsSwept|TestDuplicateLayers|TestStoreSharedByOverlayDrivers|TestCopyDriverCache|TestExtractOverlay|TestNormalizeFuseUpper|TestOverlayManyLayers|TestDetectAndOpen|TestLayerStoreTornAndRace)$"
	for _, v := range []struct {
		name   string
		cmd    []string
		userns bool
	}{
		{"root-userns", []string{bin}, true},
		{"buildertest-userns", []string{"runuser", "-u", "buildertest", "--", "unshare", "--map-root-user", "--map-auto", "--mount", bin}, false},
		{"buildertest-plain", []string{"runuser", "-u", "buildertest", "--", bin}, false},
	} {
		t.Run(v.name, func(t *testing.T) {
			tmp := filepath.Join(dir, "tmp-"+v.name)
			mustDo(t, os.Mkdir(tmp, 0o700))
			if v.name != "root-userns" {
				out, err := exec.Command("chown", "buildertest:", tmp).CombinedOutput()
				if err != nil {
					t.Fatalf("chown: %v %s", err, out)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			args := append(v.cmd[1:], "-test.run", tests, "-test.count=1", "-test.v")
			cmd := exec.CommandContext(ctx, v.cmd[0], args...)
			cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR=" + tmp, nestedEnvVar + "=" + v.name, "HOME=" + tmp}
			cmd.Dir = "/"
			if v.userns {
				cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
					UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 65536}},
					GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 65536}}}
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("nested run failed: %v\n%s", err, out)
			}
			passed := 0
			for _, m := range nestedRE.FindAllStringSubmatch(string(out), -1) {
				switch {
				case m[1] == "PASS":
					passed++
				case m[1] == "SKIP" && m[2] == "TestOverlayManyLayers" && v.name == "buildertest-plain":
				default:
					t.Errorf("nested %s %s", m[2], m[1])
				}
			}
			if passed < 8 {
				t.Errorf("only %d tests passed inside:\n%s", passed, out)
			}
			t.Logf("%s:\n%s", v.name, out)
		})
	}
}

// What a killed builder leaves (a mount, its directory, a tree in use) goes when the next driver
// opens the root: the flock of a dead process is gone.
func TestStaleSnapshotsSwept(t *testing.T) {
	ctx := context.Background()
	for _, dc := range availableDrivers(t) {
		t.Run(dc.name, func(t *testing.T) {
			root := t.TempDir()
			d, err := dc.open(root)
			mustDo(t, err)
			l1, l2 := baseLayers(t)
			m, err := d.Prepare(ctx, layersOf(l1, l2))
			mustDo(t, err)
			switch m := m.(type) { // as if the process died: the lock goes, the rest stays
			case *overlayMount:
				m.dir.unlock()
			case *copyMount:
				m.dir.unlock()
			}
			if _, err := dc.open(root); err != nil {
				t.Fatal(err)
			}
			checkClean(t, root)
			mustDo(t, m.Release())
		})
	}
}

// A layer repeated in the stack: overlayfs refuses a lowerdir twice, so the drivers keep its
// topmost copy, which must give the tree applying every layer in turn gives.
func TestDuplicateLayers(t *testing.T) {
	l1, l2 := baseLayers(t)
	want := t.TempDir()
	for _, l := range []memLayer{l1, l2, l1} {
		mustDo(t, apply(t, want, mustRead(t, l), ApplyOptions{}))
	}
	for _, dc := range availableDrivers(t) {
		t.Run(dc.name, func(t *testing.T) {
			root := t.TempDir()
			d, err := dc.open(root)
			mustDo(t, err)
			m, err := d.Prepare(context.Background(), layersOf(l1, l2, l1))
			mustDo(t, err)
			diffLines(t, "tree", treeLines(t, want), treeLines(t, m.Root()))
			mustDo(t, m.Release())
			checkClean(t, root)
		})
	}
}

// A layer one overlay driver committed serves the other: fuse-overlayfs's upper dir is converted
// to the store format on commit, and both read it.
func TestStoreSharedByOverlayDrivers(t *testing.T) {
	var ovl []driverCase
	for _, dc := range availableDrivers(t) {
		if dc.name != "copy" {
			ovl = append(ovl, dc)
		}
	}
	if len(ovl) < 2 {
		t.Logf("only %d overlay drivers here: nothing to share", len(ovl))
		return
	}
	ctx := context.Background()
	chown := canChown1000(t)
	for _, pair := range [][2]driverCase{{ovl[0], ovl[1]}, {ovl[1], ovl[0]}} {
		t.Run(pair[0].name+" to "+pair[1].name, func(t *testing.T) {
			root := t.TempDir()
			w, err := pair[0].open(root)
			mustDo(t, err)
			l1, l2 := baseLayers(t)
			m, err := w.Prepare(ctx, layersOf(l1, l2))
			mustDo(t, err)
			changeTree(t, m.Root(), chown)
			want := treeLines(t, m.Root())
			var b bytes.Buffer
			mustDo(t, m.Diff(ctx, &b, ownerOpts(clampLater)))
			top := newMemLayer(b.Bytes())
			mustDo(t, m.Commit(ctx, top.DiffID))
			r, err := pair[1].open(root)
			mustDo(t, err)
			m, err = r.Prepare(ctx, layersOf(l1, l2, top))
			mustDo(t, err)
			diffLines(t, "tree", want, treeLines(t, m.Root()))
			var empty bytes.Buffer
			mustDo(t, m.Diff(ctx, &empty, ownerOpts(clampLater)))
			if lines := tarLines(t, empty.Bytes()); len(lines) != 0 {
				t.Errorf("no changes, yet a diff:\n%s", strings.Join(lines, "\n"))
			}
			mustDo(t, m.Release())
			if top.opens.Load() != 0 {
				t.Error("committed layer extracted again")
			}
			checkClean(t, root)
		})
	}
}

// Empty stacks: a writable empty root, and an empty view.
func TestEmptyStack(t *testing.T) {
	ctx := context.Background()
	for _, dc := range availableDrivers(t) {
		t.Run(dc.name, func(t *testing.T) {
			root := t.TempDir()
			d, err := dc.open(root)
			mustDo(t, err)
			m, err := d.Prepare(ctx, nil)
			mustDo(t, err)
			mustDo(t, os.WriteFile(filepath.Join(m.Root(), "f"), []byte("x"), 0o644))
			var b bytes.Buffer
			mustDo(t, m.Diff(ctx, &b, ownerOpts(clampLater)))
			diffLines(t, "diff", []string{`f 0644 0:0 1 ` + strconv.FormatInt(clampLater.Unix(), 10) + ` f "x"`}, tarLines(t, b.Bytes()))
			top := newMemLayer(b.Bytes())
			mustDo(t, m.Commit(ctx, top.DiffID))
			for _, layers := range [][]Layer{nil, layersOf(top)} {
				v, release, err := d.View(ctx, layers)
				mustDo(t, err)
				if got := treeLines(t, v); len(got) != len(layers) {
					t.Errorf("view of %d layers: %v", len(layers), got)
				}
				mustDo(t, release())
			}
			checkClean(t, root)
		})
	}
}

// A layer published without a flush is dropped when its marker names another boot (the machine
// went down, its tree may be torn) and re-extracted on demand; this boot's layers stay.
func TestLayerStoreUnsyncedAfterRestart(t *testing.T) {
	root := t.TempDir()
	l1, l2 := baseLayers(t)
	open := func() *layerStore {
		s, err := openLayerStore(root, "user.overlay.", ApplyOptions{NoChown: !isRoot()}, Options{}.logger())
		mustDo(t, err)
		return s
	}
	s := open()
	p1, err := s.get(context.Background(), l1.Layer)
	mustDo(t, err)
	p2, err := s.get(context.Background(), l2.Layer)
	mustDo(t, err)
	markers := filepath.Join(root, "layers", unsyncedDir)
	this := filepath.Join(markers, filepath.Base(p1)+"."+bootID())
	if _, err := os.Stat(this); err != nil {
		t.Fatalf("no marker for a published layer: %v", err)
	}
	// l2's marker becomes another boot's.
	mustDo(t, os.Rename(filepath.Join(markers, filepath.Base(p2)+"."+bootID()), filepath.Join(markers, filepath.Base(p2)+".0123456789abcdef")))
	s = open()
	if _, err := os.Stat(p2); !os.IsNotExist(err) {
		t.Errorf("layer from before a restart kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(p1, "etc/passwd")); err != nil {
		t.Errorf("this boot's layer dropped: %v", err)
	}
	if _, err := s.get(context.Background(), l2.Layer); err != nil || l2.opens.Load() != 2 {
		t.Errorf("dropped layer not extracted again (%d opens): %v", l2.opens.Load(), err)
	}
	// Old markers of this boot are cleared after one flush; the layer stays.
	old := time.Now().Add(-2 * markerAge)
	mustDo(t, os.Chtimes(this, old, old))
	open()
	if _, err := os.Stat(this); !os.IsNotExist(err) {
		t.Errorf("old marker of this boot kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(p1, "etc/passwd")); err != nil {
		t.Errorf("flushed layer dropped: %v", err)
	}
}

// Prune removes the trees keep rejects (and their unsynced markers), keeps
// the others, and everything with keep nil.
func TestPruneTrees(t *testing.T) {
	root := t.TempDir()
	l1, l2 := baseLayers(t)
	s, err := openLayerStore(root, "user.overlay.", ApplyOptions{NoChown: !isRoot()}, Options{}.logger())
	mustDo(t, err)
	p1, err := s.get(context.Background(), l1.Layer)
	mustDo(t, err)
	p2, err := s.get(context.Background(), l2.Layer)
	mustDo(t, err)
	res, err := Prune(root, func(d digest.Digest) bool { return d == l1.DiffID })
	mustDo(t, err)
	if res.Trees != 1 || res.Bytes == 0 {
		t.Errorf("removed %+v, want one tree", res)
	}
	if _, err := os.Stat(p1); err != nil {
		t.Errorf("kept layer removed: %v", err)
	}
	if _, err := os.Stat(p2); !os.IsNotExist(err) {
		t.Errorf("pruned layer still there: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(root, "layers", unsyncedDir, filepath.Base(p2)+".*")); len(m) != 0 {
		t.Errorf("marker of a pruned layer kept: %v", m)
	}
	if _, err := Prune(root, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p1); !os.IsNotExist(err) {
		t.Errorf("prune with keep nil kept %s", p1)
	}
}
