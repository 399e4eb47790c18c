package snapshot

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// memLayer is a layer held in memory; opens counts how often a driver asked for its tar.
type memLayer struct {
	Layer
	opens *atomic.Int32
}

func newMemLayer(data []byte) memLayer {
	var n atomic.Int32
	return memLayer{Layer{DiffID: digest.FromBytes(data), Open: func(context.Context) (io.ReadCloser, error) {
		n.Add(1)
		return io.NopCloser(bytes.NewReader(data)), nil
	}}, &n}
}

func layersOf(ms ...memLayer) []Layer {
	out := make([]Layer, len(ms))
	for i, m := range ms {
		out[i] = m.Layer
	}
	return out
}

// baseLayers are the two lower layers of the driver tests: the second deletes (etc/keep), makes a
// directory opaque (opq/) and adds a file with an xattr.
func baseLayers(t testing.TB) (memLayer, memLayer) {
	l1 := makeTar(t,
		dir("etc/"), file("etc/passwd", "root"), file("etc/keep", "k"), file("etc/hl", "h"),
		dir("var/"), dir("var/lib/"), file("var/lib/a", "a"), dir("var/lib/sub/"), file("var/lib/sub/b", "b"),
		dir("rmdir/"), file("rmdir/x", "x"), dir("rmdir/sub/"), file("rmdir/sub/y", "y"),
		dir("recreate/"), file("recreate/old", "o"), dir("recreate/oldsub/"), file("recreate/oldsub/z", "z"),
		file("modify", "old"), file("chownme", "c"),
		dir("usr/"), dir("usr/bin/"), ent{name: "usr/bin/tool", typ: tar.TypeReg, mode: 0o755, body: "tool"},
		dir("opq/"), file("opq/hidden", "h"))
	l2 := makeTar(t,
		dir("etc/"), file("etc/.wh.keep", ""),
		ent{name: "etc/hosts", typ: tar.TypeReg, mode: 0o644, body: "hosts", xattrs: map[string]string{"user.note": "1"}},
		dir("opq/"), file("opq/.wh..wh..opq", ""), file("opq/new", "n"))
	return newMemLayer(l1), newMemLayer(l2)
}

// The merged view of baseLayers.
var baseTree = []string{
	`f 0644 0:0 chownme "c"`, "d 0755 0:0 etc/", `f 0644 0:0 etc/hl "h"`, `f 0644 0:0 etc/hosts [user.note="1"] "hosts"`,
	`f 0644 0:0 etc/passwd "root"`, `f 0644 0:0 modify "old"`, "d 0755 0:0 opq/", `f 0644 0:0 opq/new "n"`,
	"d 0755 0:0 recreate/", `f 0644 0:0 recreate/old "o"`, "d 0755 0:0 recreate/oldsub/", `f 0644 0:0 recreate/oldsub/z "z"`,
	"d 0755 0:0 rmdir/", "d 0755 0:0 rmdir/sub/", `f 0644 0:0 rmdir/sub/y "y"`, `f 0644 0:0 rmdir/x "x"`,
	"d 0755 0:0 usr/", "d 0755 0:0 usr/bin/", `f 0755 0:0 usr/bin/tool "tool"`,
	"d 0755 0:0 var/", "d 0755 0:0 var/lib/", `f 0644 0:0 var/lib/a "a"`, "d 0755 0:0 var/lib/sub/", `f 0644 0:0 var/lib/sub/b "b"`,
}

// canChown1000 tells whether this process can give files to uid 1000 (not in a single-id user namespace, not unprivileged).
func canChown1000(t testing.TB) bool {
	f := filepath.Join(t.TempDir(), "probe")
	mustDo(t, os.WriteFile(f, nil, 0o644))
	return os.Lchown(f, 1000, 1000) == nil
}

// changeTree makes the same changes in every driver's root: the cases a RUN step produces.
func changeTree(t testing.TB, root string, chown bool) {
	t.Helper()
	p := func(rel string) string { return filepath.Join(root, rel) }
	mustDo(t, os.WriteFile(p("etc/newfile"), []byte("new"), 0o644)) // create
	setXattr(t, p("etc/newfile"), "user.test", "v")
	mustDo(t, os.WriteFile(p("modify"), []byte("new content"), 0o644)) // modify
	mustDo(t, os.Remove(p("etc/passwd")))                              // delete a file from below
	mustDo(t, os.RemoveAll(p("rmdir")))                                // delete a directory from below
	mustDo(t, os.RemoveAll(p("recreate")))                             // delete and recreate a directory
	mustDo(t, os.Mkdir(p("recreate"), 0o750))
	mustDo(t, os.WriteFile(p("recreate/fresh"), []byte("f"), 0o600))
	mustDo(t, os.Chmod(p("usr/bin/tool"), os.ModeSetuid|0o755)) // chmod u+s deep down: ancestors copied up
	if chown {
		mustDo(t, os.Lchown(p("chownme"), 1000, 1000))
	}
	mustDo(t, os.Mkdir(p("hl"), 0o755)) // a hard link pair
	mustDo(t, os.WriteFile(p("hl/a"), []byte("linked"), 0o644))
	mustDo(t, os.Link(p("hl/a"), p("hl/b")))
	mustDo(t, os.Symlink("../etc/hosts", p("var/link"))) // symlink
	// As the sandbox does with mountpoints: an entry made and removed, the parent's mtime put
	// back. var/lib is copied up (overlay) or has a new ctime (copy), yet no change to show.
	var st unix.Stat_t
	mustDo(t, unix.Lstat(p("var/lib"), &st))
	mustDo(t, os.WriteFile(p("var/lib/mnt"), nil, 0o644))
	mustDo(t, os.Remove(p("var/lib/mnt")))
	mustDo(t, unix.UtimesNano(p("var/lib"), []unix.Timespec{st.Atim, st.Mtim}))
	f, err := os.OpenFile(p("opq/new"), os.O_APPEND|os.O_WRONLY, 0)
	mustDo(t, err)
	_, err = f.WriteString("+")
	mustDo(t, err)
	mustDo(t, f.Close())
}

var (
	clampLater = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC) // after the layers' mtimes: tells copied-up from changed
	clampLower = testTime                                    // the layers' mtime: erases every mtime difference
)

// wantDiff is the layer of changeTree (clamped at clampLater); "@" marks the clamp, "~" the layers' mtime.
func wantDiff(chown bool) []string {
	lines := []string{
		"f 0000 0:0 0 @ .wh.rmdir",
		`f 0644 1000:1000 1 ~ chownme "c"`,
		"d 0755 0:0 0 @ etc/", "f 0000 0:0 0 @ etc/.wh.passwd", `f 0644 0:0 3 @ etc/newfile [user.test="v"] "new"`,
		"d 0755 0:0 0 @ hl/", `f 0644 0:0 6 @ hl/a "linked"`, "h 0644 0:0 0 @ hl/b -> hl/a",
		`f 0644 0:0 11 @ modify "new content"`,
		"d 0755 0:0 0 ~ opq/", `f 0644 0:0 2 @ opq/new "n+"`,
		"d 0750 0:0 0 @ recreate/", "f 0000 0:0 0 @ recreate/.wh..wh..opq", `f 0600 0:0 1 @ recreate/fresh "f"`,
		"d 0755 0:0 0 ~ usr/", "d 0755 0:0 0 ~ usr/bin/", `f 4755 0:0 4 ~ usr/bin/tool "tool"`,
		"d 0755 0:0 0 @ var/", "l 0777 0:0 0 @ var/link -> ../etc/hosts",
	}
	if !chown {
		lines = slices.Delete(lines, 1, 2)
	}
	return lines
}

// symbolicTarLines renders tarLines with the clamp times symbolic, in tar order.
func symbolicTarLines(t testing.TB, data []byte) []string {
	lines := tarLines(t, data)
	for i, l := range lines {
		l = strings.Replace(l, " "+strconv.FormatInt(clampLater.Unix(), 10)+" ", " @ ", 1)
		lines[i] = strings.Replace(l, " "+strconv.FormatInt(clampLower.Unix(), 10)+" ", " ~ ", 1)
	}
	return lines
}

// ownerOpts maps the caller's own ids to 0 when unprivileged, as treeLines does.
func ownerOpts(clamp time.Time) WriteOptions {
	o := WriteOptions{Clamp: &clamp}
	if !isRoot() {
		uid, gid := os.Geteuid(), os.Getegid()
		o.MapOwner = func(u, g int) (int, int) {
			if u == uid && g == gid {
				return 0, 0
			}
			return u, g
		}
	}
	return o
}

type driverCase struct {
	name string
	open func(root string) (Driver, error)
}

// availableDrivers lists the drivers that must work in this process: the overlay ones need root
// (real, or in a user namespace); fuse-overlayfs also needs access to /dev/fuse.
func availableDrivers(t testing.TB) []driverCase {
	all := []driverCase{
		{"overlay", func(root string) (Driver, error) { return NewOverlay(root, Options{}) }},
		{"fuse-overlayfs", func(root string) (Driver, error) { return NewFuseOverlay(root, "") }},
		{"copy", func(root string) (Driver, error) { return NewCopy(root) }},
	}
	fuseOK := unix.Access("/dev/fuse", unix.R_OK|unix.W_OK) == nil
	var out []driverCase
	for _, c := range all {
		switch {
		case c.name == "overlay" && !isRoot():
			if _, err := c.open(t.TempDir()); err == nil {
				t.Errorf("overlay works unprivileged outside a user namespace?")
			}
		case c.name == "fuse-overlayfs" && (!fuseOK || !isRoot()):
			t.Logf("fuse-overlayfs not exercised here: /dev/fuse accessible=%v, root=%v", fuseOK, isRoot())
		default:
			out = append(out, c)
		}
	}
	return out
}

func TestDriverMatrix(t *testing.T) {
	ctx := context.Background()
	chown := canChown1000(t)
	diffs := map[string][]byte{}
	flat := map[string][]byte{}
	var wantTree []string
	for _, dc := range availableDrivers(t) {
		t.Run(dc.name, func(t *testing.T) {
			root := t.TempDir()
			d, err := dc.open(root)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			if d.Name() != dc.name {
				t.Errorf("Name() = %q", d.Name())
			}
			l1, l2 := baseLayers(t)
			base := layersOf(l1, l2)
			m, err := d.Prepare(ctx, base)
			if err != nil {
				t.Fatalf("prepare: %v", err)
			}
			defer m.Release()
			diffLines(t, "prepared tree", baseTree, treeLines(t, m.Root()))
			changeTree(t, m.Root(), chown)
			tree := treeLines(t, m.Root())
			if wantTree == nil {
				wantTree = tree
			}
			diffLines(t, "changed tree", wantTree, tree)

			var layer, flatLayer bytes.Buffer
			mustDo(t, m.Diff(ctx, &layer, ownerOpts(clampLater)))
			mustDo(t, m.Diff(ctx, &flatLayer, ownerOpts(clampLower)))
			diffs[dc.name], flat[dc.name] = layer.Bytes(), flatLayer.Bytes()
			got := symbolicTarLines(t, layer.Bytes())
			if dc.name == "fuse-overlayfs" {
				// fuse-overlayfs does not restore a directory's mtime after copying a child up
				// into it, as the kernel does: the directories show the time of the change.
				got = slices.Clone(got)
				for i, l := range got {
					if strings.HasPrefix(l, "d ") {
						got[i] = strings.Replace(l, " @ ", " ~ ", 1)
					}
				}
				want := wantDiff(chown)
				for i, l := range want {
					if strings.HasPrefix(l, "d ") {
						want[i] = strings.Replace(l, " @ ", " ~ ", 1)
					}
				}
				diffLines(t, "diff (directory mtimes aside)", want, got)
			} else {
				diffLines(t, "diff", wantDiff(chown), got)
			}

			// The diff applied to the lower layers gives the changed tree.
			check := t.TempDir()
			mustDo(t, apply(t, check, mustRead(t, l1), ApplyOptions{}))
			mustDo(t, apply(t, check, mustRead(t, l2), ApplyOptions{}))
			mustDo(t, apply(t, check, layer.Bytes(), ApplyOptions{}))
			diffLines(t, "lower layers + diff", wantTree, treeLines(t, check))

			// Commit; the longer chain is served without extracting anything again.
			top := newMemLayer(layer.Bytes())
			mustDo(t, m.Commit(ctx, top.DiffID))
			mustDo(t, m.Release()) // idempotent after Commit
			checkNoMounts(t, root)
			opens := l1.opens.Load() + l2.opens.Load()
			m2, err := d.Prepare(ctx, layersOf(l1, l2, top))
			if err != nil {
				t.Fatalf("prepare over the committed layer: %v", err)
			}
			diffLines(t, "tree over the committed layer", wantTree, treeLines(t, m2.Root()))
			var empty bytes.Buffer
			mustDo(t, m2.Diff(ctx, &empty, ownerOpts(clampLater)))
			if lines := tarLines(t, empty.Bytes()); len(lines) != 0 {
				t.Errorf("no changes, yet a diff:\n%s", strings.Join(lines, "\n"))
			}
			mustDo(t, m2.Release())
			if n := l1.opens.Load() + l2.opens.Load() + top.opens.Load(); n != opens {
				t.Errorf("layers extracted again after commit: %d opens, had %d", n, opens)
			}

			// A view is the same tree, read-only for the mount drivers.
			vroot, release, err := d.View(ctx, layersOf(l1, l2, top))
			if err != nil {
				t.Fatalf("view: %v", err)
			}
			diffLines(t, "view", wantTree, treeLines(t, vroot))
			if dc.name != "copy" {
				if err := os.WriteFile(filepath.Join(vroot, "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
					t.Errorf("write into a view: %v, want EROFS", err)
				}
			}
			mustDo(t, release())
			mustDo(t, release())
			mustDo(t, d.(io.Closer).Close())
			checkClean(t, root)
		})
	}
	for name, b := range diffs {
		if name != "fuse-overlayfs" && !bytes.Equal(b, diffs["copy"]) {
			t.Errorf("%s and copy diffs differ", name)
		}
		if !bytes.Equal(flat[name], flat["copy"]) {
			t.Errorf("%s and copy diffs differ, even with all mtimes clamped", name)
		}
	}
}

func mustRead(t testing.TB, l memLayer) []byte {
	rc, err := l.Open(context.Background())
	mustDo(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	mustDo(t, err)
	l.opens.Add(-1)
	return b
}

// checkNoMounts fails when anything is still mounted under root.
func checkNoMounts(t testing.TB, root string) {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	mustDo(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], root+"/") {
			t.Errorf("still mounted: %s", sc.Text())
		}
	}
}

// checkClean fails on leftovers: mounts, mount dirs, temp dirs, trees in use.
func checkClean(t testing.TB, root string) {
	t.Helper()
	checkNoMounts(t, root)
	for _, sub := range []string{"mounts", "copy/work"} {
		if ents, _ := os.ReadDir(filepath.Join(root, sub)); len(ents) > 0 {
			t.Errorf("left in %s: %v", sub, ents)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(root, "layers"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temp dir left: %s", e.Name())
		}
	}
}

// Two goroutines preparing the same (not yet extracted) layers both succeed and see the same
// tree; the overlay drivers extract each layer once. Two drivers on one root act as two builders.
func TestDriverConcurrentPrepare(t *testing.T) {
	ctx := context.Background()
	for _, dc := range availableDrivers(t) {
		t.Run(dc.name, func(t *testing.T) {
			root := t.TempDir()
			d1, err := dc.open(root)
			mustDo(t, err)
			d2, err := dc.open(root)
			mustDo(t, err)
			l1, l2 := baseLayers(t)
			var wg sync.WaitGroup
			ms := make([]Mount, 4)
			errs := make([]error, 4)
			for i := range ms {
				d := []Driver{d1, d2}[i%2]
				wg.Go(func() { ms[i], errs[i] = d.Prepare(ctx, layersOf(l1, l2)) })
			}
			wg.Wait()
			for i, m := range ms {
				if errs[i] != nil {
					t.Fatalf("prepare %d: %v", i, errs[i])
				}
				diffLines(t, "tree", baseTree, treeLines(t, m.Root()))
				mustDo(t, os.WriteFile(filepath.Join(m.Root(), "own"), []byte{byte(i)}, 0o644))
			}
			for _, m := range ms {
				mustDo(t, m.Release())
			}
			if dc.name != "copy" && (l1.opens.Load() != 1 || l2.opens.Load() != 1) {
				t.Errorf("layers opened %d and %d times, want once each", l1.opens.Load(), l2.opens.Load())
			}
			mustDo(t, d1.(io.Closer).Close())
			mustDo(t, d2.(io.Closer).Close())
			checkClean(t, root)
		})
	}
}

// The copy driver reuses its cached tree for the next step, and a Prepare over a longer chain
// extracts only the layers the cache lacks.
func TestCopyDriverCache(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d, err := NewCopy(root, Options{CacheSize: 2})
	mustDo(t, err)
	l1, l2 := baseLayers(t)
	v, release, err := d.View(ctx, layersOf(l1))
	mustDo(t, err)
	if _, err := os.Stat(filepath.Join(v, "etc/keep")); err != nil {
		t.Errorf("view of the first layer: %v", err)
	}
	mustDo(t, release())
	m, err := d.Prepare(ctx, layersOf(l1, l2)) // l1 from the cache, l2 extracted
	mustDo(t, err)
	if l1.opens.Load() != 1 || l2.opens.Load() != 1 {
		t.Errorf("opens %d, %d; want 1, 1", l1.opens.Load(), l2.opens.Load())
	}
	mustDo(t, os.WriteFile(filepath.Join(m.Root(), "step1"), []byte("1"), 0o644))
	var b bytes.Buffer
	mustDo(t, m.Diff(ctx, &b, ownerOpts(clampLater)))
	top := newMemLayer(b.Bytes())
	mustDo(t, m.Commit(ctx, top.DiffID))
	m, err = d.Prepare(ctx, layersOf(l1, l2, top))
	mustDo(t, err)
	if n := l1.opens.Load() + l2.opens.Load() + top.opens.Load(); n != 2 {
		t.Errorf("the committed tree was not reused: %d opens", n)
	}
	mustDo(t, m.Release())
	// Release discarded that tree: the next Prepare builds it again from the older cached chain.
	m, err = d.Prepare(ctx, layersOf(l1, l2, top))
	mustDo(t, err)
	if top.opens.Load() != 1 {
		t.Errorf("top layer opened %d times, want 1", top.opens.Load())
	}
	// A step that changed nothing (empty Diff, then Release) keeps the tree cached...
	var none bytes.Buffer
	mustDo(t, m.Diff(ctx, &none, ownerOpts(clampLater)))
	mustDo(t, m.Release())
	m, err = d.Prepare(ctx, layersOf(l1, l2, top))
	mustDo(t, err)
	if top.opens.Load() != 1 {
		t.Errorf("unchanged tree not kept: top layer opened %d times", top.opens.Load())
	}
	// ...but not when it changed after all.
	mustDo(t, m.Diff(ctx, &none, ownerOpts(clampLater)))
	mustDo(t, os.WriteFile(filepath.Join(m.Root(), "late"), nil, 0o644))
	mustDo(t, m.Release())
	m, err = d.Prepare(ctx, layersOf(l1, l2, top))
	mustDo(t, err)
	if _, err := os.Stat(filepath.Join(m.Root(), "late")); !os.IsNotExist(err) || top.opens.Load() != 2 {
		t.Errorf("a changed tree was cached (%d opens): %v", top.opens.Load(), err)
	}
	mustDo(t, m.Release())
	ents, _ := os.ReadDir(filepath.Join(root, "copy/chains"))
	if len(ents) > 2 {
		t.Errorf("cache holds %d trees, more than CacheSize", len(ents))
	}
	checkClean(t, root)
}

// A step that creates a file under a whiteout name gets no layer: such a
// file would delete its namesake for every consumer of the image. With
// fuse-overlayfs the mount itself refuses the name.
func TestReservedNamesRefused(t *testing.T) {
	ctx := context.Background()
	for _, dc := range availableDrivers(t) {
		for _, name := range []string{".wh.etc", "usr/.wh..wh..opq", "data/.wh.x"} {
			t.Run(dc.name+"/"+name, func(t *testing.T) {
				d, err := dc.open(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				l1, l2 := baseLayers(t)
				m, err := d.Prepare(ctx, layersOf(l1, l2))
				if err != nil {
					t.Fatal(err)
				}
				defer m.Release()
				p := filepath.Join(m.Root(), name)
				os.MkdirAll(filepath.Dir(p), 0o755)
				err = os.WriteFile(p, nil, 0o644)
				if dc.name == "fuse-overlayfs" {
					if !errors.Is(err, unix.EINVAL) {
						t.Fatalf("fuse-overlayfs let %s be created: %v", name, err)
					}
					return
				}
				mustDo(t, err)
				err = m.Diff(ctx, io.Discard, WriteOptions{})
				if !errors.Is(err, ErrReservedName) || !strings.Contains(err.Error(), "/"+name) {
					t.Fatalf("diff: %v; want ErrReservedName naming /%s", err, name)
				}
			})
		}
	}
}

// A layer whose bytes do not hash to its diff ID (a hostile cache record or
// base image claiming a popular layer's ID) is never published under that
// ID: the extraction fails, and the honest layer is extracted afterwards.
// Also when the stream digests itself (the executor's tar-split reader),
// whose digest the extraction then takes instead of hashing again.
func TestPoisonedLayerRefused(t *testing.T) {
	ctx := context.Background()
	honest := makeTar(t, dir("etc/"), file("etc/passwd", "root:x:0:0"))
	evil := makeTar(t, dir("etc/"), file("etc/passwd", "root::0:0"), file("etc/backdoor", "x"))
	streams := []struct {
		name string
		open func([]byte) io.ReadCloser
	}{
		{"plain", func(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }},
		{"digesting itself", func(b []byte) io.ReadCloser { return newSelfDigesting(b) }},
	}
	for _, dc := range availableDrivers(t) {
		for _, st := range streams {
			t.Run(dc.name+"/"+st.name, func(t *testing.T) {
				d, err := dc.open(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				layer := func(id digest.Digest, b []byte) Layer {
					return Layer{DiffID: id, Open: func(context.Context) (io.ReadCloser, error) { return st.open(b), nil }}
				}
				lie := layer(digest.FromBytes(honest), evil)
				if m, err := d.Prepare(ctx, []Layer{lie}); !errors.Is(err, ErrDiffIDMismatch) {
					if err == nil {
						m.Release()
					}
					t.Fatalf("prepare over a lying layer: %v", err)
				}
				if _, _, err := d.View(ctx, []Layer{lie}); !errors.Is(err, ErrDiffIDMismatch) {
					t.Fatalf("view over a lying layer: %v", err)
				}
				root, release, err := d.View(ctx, []Layer{layer(digest.FromBytes(honest), honest)})
				if err != nil {
					t.Fatal(err)
				}
				defer release()
				got, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
				if string(got) != "root:x:0:0" {
					t.Errorf("etc/passwd = %q", got)
				}
				if _, err := os.Lstat(filepath.Join(root, "etc/backdoor")); err == nil {
					t.Error("the lying layer's file is in the honest tree")
				}
			})
		}
	}
}

// selfDigesting is a stream that digests what is read through it, as
// layer.SplitReader does (a hashingReader).
type selfDigesting struct {
	r io.Reader
	d digest.Digester
}

func newSelfDigesting(b []byte) *selfDigesting {
	return &selfDigesting{r: bytes.NewReader(b), d: digest.Canonical.Digester()}
}

func (s *selfDigesting) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.d.Hash().Write(p[:n])
	return n, err
}

func (s *selfDigesting) Digest() digest.Digest { return s.d.Digest() }
func (s *selfDigesting) Close() error          { return nil }
