package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestApply(t *testing.T) {
	t.Parallel()
	lower := []ent{
		dir("d/"), file("d/a", "a"), dir("d/sub/"), file("d/sub/y", "y"), file("d/b", "b"),
		dir("gone/"), file("gone/x", "x"), file("keep", "k"), file("f", "file"), dir("e/"), file("e/z", "z"),
	}
	rest := []string{"d 0755 0:0 e/", `f 0644 0:0 e/z "z"`, `f 0644 0:0 f "file"`, "d 0755 0:0 gone/", `f 0644 0:0 gone/x "x"`}
	withRest := func(ls ...string) []string {
		out := append([]string{}, ls...)
		out = append(out, rest...)
		return append(out, `f 0644 0:0 keep "k"`)
	}
	lowerD := []string{"d 0755 0:0 d/", `f 0644 0:0 d/a "a"`, `f 0644 0:0 d/b "b"`, "d 0755 0:0 d/sub/", `f 0644 0:0 d/sub/y "y"`}
	tests := []struct {
		name    string
		lower   []ent
		layer   []ent
		opts    ApplyOptions
		want    []string
		wantErr string
	}{{
		name: "basic types and implicit parents",
		layer: []ent{
			file("./usr/bin/tool", "tool"), {name: "usr/bin/su", typ: tar.TypeReg, mode: 0o4755, body: "su"},
			{name: "usr/share/", typ: tar.TypeDir, mode: 0o2775}, symlink("usr/bin/sh", "/bin/busybox"),
			hardlink("usr/bin/tool2", "usr/bin/tool"), {name: "x", typ: tar.TypeReg, mode: 0o600, xattrs: map[string]string{"user.a": "1"}},
			{name: "tmp", typ: tar.TypeDir, mode: 0o1777},
		},
		want: []string{
			"d 1777 0:0 tmp/", "d 0755 0:0 usr/", "d 0755 0:0 usr/bin/", "l 0777 0:0 usr/bin/sh -> /bin/busybox",
			`f 4755 0:0 usr/bin/su "su"`, `f 0644 0:0 usr/bin/tool "tool" #1`, `f 0644 0:0 usr/bin/tool2 "tool" #1`,
			"d 2775 0:0 usr/share/", `f 0600 0:0 x [user.a="1"]`,
		},
	}, {
		name:  "whiteouts remove lower entries",
		lower: lower,
		layer: []ent{file(".wh.gone", ""), file("d/.wh.sub", ""), file(".wh.missing", ""), file("nodir/.wh.x", "")},
		want: []string{"d 0755 0:0 d/", `f 0644 0:0 d/a "a"`, `f 0644 0:0 d/b "b"`, "d 0755 0:0 e/", `f 0644 0:0 e/z "z"`,
			`f 0644 0:0 f "file"`, `f 0644 0:0 keep "k"`},
	}, {
		name:  "opaque marker first",
		lower: lower,
		layer: []ent{dir("d/"), file("d/.wh..wh..opq", ""), file("d/c", "c")},
		want:  withRest("d 0755 0:0 d/", `f 0644 0:0 d/c "c"`),
	}, {
		name:  "opaque marker last spares this layer",
		lower: lower,
		layer: []ent{dir("d/"), file("d/c", "c"), file("d/sub/new", "n"), file("d/.wh..wh..opq", "")},
		want:  withRest("d 0755 0:0 d/", `f 0644 0:0 d/c "c"`, "d 0755 0:0 d/sub/", `f 0644 0:0 d/sub/new "n"`),
	}, {
		name:  "opaque root",
		lower: lower,
		layer: []ent{file("new", "n"), file(".wh..wh..opq", "")},
		want:  []string{`f 0644 0:0 new "n"`},
	}, {
		name:  "whiteout spares this layer's entry",
		lower: lower,
		layer: []ent{file("keep", "new"), file(".wh.keep", ""), file("e/.wh..wh.plnk", "")},
		want:  append(append(lowerD, rest...), `f 0644 0:0 keep "new"`),
	}, {
		name:  "NoWhiteouts keeps .wh. files",
		layer: []ent{file(".wh.x", "w"), file("d/.wh..wh..opq", "o")},
		opts:  ApplyOptions{NoWhiteouts: true},
		want:  []string{`f 0644 0:0 .wh.x "w"`, "d 0755 0:0 d/", `f 0644 0:0 d/.wh..wh..opq "o"`},
	}, {
		name:  "replacements",
		lower: lower,
		layer: []ent{file("d", "now a file"), {name: "f/", typ: tar.TypeDir, mode: 0o700}, file("f/in", "i"),
			{name: "e", typ: tar.TypeDir, mode: 0o555}, symlink("keep", "d"), symlink("gone", "keep")},
		want: []string{`f 0644 0:0 d "now a file"`, "d 0555 0:0 e/", `f 0644 0:0 e/z "z"`, "d 0700 0:0 f/", `f 0644 0:0 f/in "i"`,
			"l 0777 0:0 gone -> keep", "l 0777 0:0 keep -> d"},
	}, {
		name:  "hard links to earlier and lower entries",
		lower: lower,
		layer: []ent{file("n", "new"), hardlink("n2", "./n"), hardlink("k2", "keep"), hardlink("keep", "keep")},
		want: append(append(lowerD, rest...), `f 0644 0:0 k2 "k" #1`, `f 0644 0:0 keep "k" #1`, `f 0644 0:0 n "new" #2`,
			`f 0644 0:0 n2 "new" #2`),
	}, {
		name:    "absolute name",
		layer:   []ent{file("/etc/passwd", "x")},
		wantErr: `entry "/etc/passwd": unsafe path`,
	}, {
		name:    "dot-dot name",
		layer:   []ent{file("../x", "x")},
		wantErr: `entry "../x": unsafe path`,
	}, {
		name:    "cancelling dot-dot name",
		layer:   []ent{file("a/../../x", "x")},
		wantErr: `unsafe path`,
	}, {
		name:    "hard link out",
		layer:   []ent{hardlink("pw", "../../../etc/passwd")},
		wantErr: `entry "pw": hard link: unsafe path`,
	}, {
		name:    "absolute hard link",
		layer:   []ent{hardlink("pw", "/etc/passwd")},
		wantErr: `entry "pw": hard link: unsafe path`,
	}, {
		name:    "hard link through symlink",
		layer:   []ent{symlink("esc", "/etc"), hardlink("pw", "esc/passwd")},
		wantErr: `entry "pw": hard link target "esc/passwd"`,
	}, {
		name:    "whiteout of dot-dot",
		layer:   []ent{file("a/.wh...", "")},
		wantErr: "unsafe path",
	}, {
		name:    "hard link to directory",
		lower:   lower,
		layer:   []ent{hardlink("dd", "d")},
		wantErr: "is a directory",
	}, {
		name:    "whiteout name as a directory",
		layer:   []ent{file("a/.wh.b/c", "x")},
		wantErr: "whiteout name used as a directory",
	}, {
		name:  "whiteout names as content",
		layer: []ent{file("a/.wh.b/c", "x")},
		opts:  ApplyOptions{NoWhiteouts: true},
		want:  []string{"d 0755 0:0 a/", "d 0755 0:0 a/.wh.b/", `f 0644 0:0 a/.wh.b/c "x"`},
	}, {
		name:    "unsupported type",
		layer:   []ent{{name: "x", typ: 'X'}},
		wantErr: "unsupported entry type",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			outer := t.TempDir()
			root := filepath.Join(outer, "a", "b", "root")
			mustDo(t, os.MkdirAll(root, 0o755))
			t.Cleanup(func() { makeRemovable(outer) })
			if tt.lower != nil {
				mustDo(t, apply(t, root, makeTar(t, tt.lower...), ApplyOptions{}))
			}
			err := apply(t, root, makeTar(t, tt.layer...), tt.opts)
			assertContained(t, outer, root)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Apply error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if tt.want != nil {
				diffLines(t, "tree", tt.want, treeLines(t, root))
			}
		})
	}
}

// assertContained checks that outer holds nothing but the chain of directories leading to root.
func assertContained(t testing.TB, outer, root string) {
	t.Helper()
	err := filepath.Walk(outer, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return filepath.SkipDir
		}
		if !fi.IsDir() || !strings.HasPrefix(root, p) {
			t.Errorf("Apply wrote outside its root: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestApplySymlinkEscape(t *testing.T) {
	t.Parallel()
	outer := t.TempDir()
	root := filepath.Join(outer, "a", "root")
	mustDo(t, os.MkdirAll(root, 0o755))
	layer := makeTar(t, symlink("esc", "/"), file("esc/etc/evil", "1"), symlink("up", "../../.."), file("up/evil2", "2"),
		dir("up/tmp/"), symlink("t", "up/tmp"), file("t/evil3", "3"), symlink("file", "../f"), file("file", "replaced, not followed"))
	mustDo(t, apply(t, root, layer, ApplyOptions{}))
	assertContained(t, outer, root)
	want := []string{`f 0644 0:0 etc/evil "1"`, `f 0644 0:0 evil2 "2"`, `f 0644 0:0 file "replaced, not followed"`,
		`f 0644 0:0 tmp/evil3 "3"`}
	var got []string
	for _, l := range treeLines(t, root) {
		if strings.HasPrefix(l, "f ") {
			got = append(got, l)
		}
	}
	diffLines(t, "files", want, got)
}

func TestApplyMetadata(t *testing.T) {
	t.Parallel()
	requireRoot(t, "chown to other ids and mknod")
	root := t.TempDir()
	mt := time.Date(2001, 1, 1, 1, 1, 1, 500, time.UTC)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "ro/", Typeflag: tar.TypeDir, Mode: 0o555, Uid: 5, Gid: 6, ModTime: mt},
		{Name: "ro/f", Typeflag: tar.TypeReg, Mode: 0o6755, Uid: 7, Gid: 8, ModTime: mt,
			PAXRecords: map[string]string{paxXattr + "security.capability": capNetBindService(), paxXattr + "user.overlay.opaque": "y",
				paxXattr + "user.k": "v"}},
		{Name: "ro/l", Typeflag: tar.TypeSymlink, Linkname: "f", Uid: 9, Gid: 9, ModTime: mt},
		{Name: "ro/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: mt},
		{Name: "ro/fifo", Typeflag: tar.TypeFifo, Mode: 0o640, ModTime: mt},
	} {
		h.Format = tar.FormatPAX
		mustDo(t, tw.WriteHeader(h))
	}
	mustDo(t, tw.Close())
	mustDo(t, apply(t, root, buf.Bytes(), ApplyOptions{MapOwner: func(u, g int) (int, int) { return u + 1000, g + 1000 }}))
	want := []string{"d 0555 1005:1006 ro/",
		fmt.Sprintf(`f 6755 1007:1008 ro/f [security.capability=%q user.k="v"]`, capNetBindService()), "p 0640 1000:1000 ro/fifo",
		"l 0777 1009:1009 ro/l -> f", "c 0666 1000:1000 ro/null 1,3"}
	diffLines(t, "tree", want, treeLines(t, root))
	for _, p := range []string{"ro", "ro/f", "ro/l", "ro/null"} {
		var st unix.Stat_t
		mustDo(t, unix.Lstat(filepath.Join(root, p), &st))
		if got := time.Unix(st.Mtim.Unix()); !got.Equal(mt) {
			t.Errorf("%s mtime = %v, want %v", p, got, mt)
		}
	}
	// NoChown leaves the extracting user as owner.
	root2 := t.TempDir()
	mustDo(t, apply(t, root2, buf.Bytes(), ApplyOptions{NoChown: true}))
	if l := treeLines(t, root2); !strings.HasPrefix(l[0], "d 0555 0:0 ") {
		t.Errorf("NoChown: %s", l[0])
	}
}

// Parents an archive leaves out belong to root, whatever a setgid grandparent would give them.
func TestApplyImpliedDirs(t *testing.T) {
	t.Parallel()
	requireRoot(t, "chown")
	root := t.TempDir()
	layer := makeTar(t, ent{name: "g/", typ: tar.TypeDir, mode: 0o2775, uid: 7, gid: 7}, file("g/implied/deeper/f", "f"))
	mustDo(t, apply(t, root, layer, ApplyOptions{MapOwner: func(u, g int) (int, int) { return u + 100, g + 100 }}))
	want := []string{"d 2775 107:107 g/", "d 0755 100:100 g/implied/", "d 0755 100:100 g/implied/deeper/",
		`f 0644 100:100 g/implied/deeper/f "f"`}
	diffLines(t, "tree", want, treeLines(t, root))
}

func TestApplyXattrErrors(t *testing.T) {
	t.Parallel()
	layer := makeTar(t, ent{name: "f", typ: tar.TypeReg, mode: 0o644, xattrs: map[string]string{"bogus.ns": "v", "user.ok": "1"}})
	if err := apply(t, t.TempDir(), layer, ApplyOptions{}); err == nil || !strings.Contains(err.Error(), "set xattr bogus.ns") {
		t.Errorf("Apply with an unsupported xattr = %v", err)
	}
	root := t.TempDir()
	mustDo(t, apply(t, root, layer, ApplyOptions{IgnoreXattrErrors: true}))
	diffLines(t, "tree", []string{`f 0644 0:0 f [user.ok="1"]`}, treeLines(t, root)[:1])
}

func TestApplyDevicesUnprivileged(t *testing.T) {
	t.Parallel()
	if isRoot() {
		t.Skip("root can mknod; this covers the EPERM path")
	}
	layer := makeTar(t, ent{name: "null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3}, file("after", "a"))
	if err := apply(t, t.TempDir(), layer, ApplyOptions{NoChown: true}); err == nil || !strings.Contains(err.Error(), "SkipDevices") {
		t.Errorf("Apply of a device unprivileged = %v", err)
	}
	mustDo(t, apply(t, t.TempDir(), layer, ApplyOptions{NoChown: true, SkipDevices: true}))
}

// Long names in both GNU and PAX form, trailing padding counted, ./ root entries skipped.
func TestApplyFormats(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("n", 150) + "/" + strings.Repeat("m", 120)
	for _, format := range []tar.Format{tar.FormatGNU, tar.FormatPAX} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		mustDo(t, tw.WriteHeader(&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o700, Format: format}))
		mustDo(t, tw.WriteHeader(&tar.Header{Name: long, Typeflag: tar.TypeReg, Mode: 0o644, Size: 1, Format: format}))
		tw.Write([]byte("z"))
		mustDo(t, tw.WriteHeader(&tar.Header{Name: "l", Typeflag: tar.TypeLink, Linkname: long, Format: format}))
		mustDo(t, tw.Close())
		buf.Write(make([]byte, 10240-buf.Len()%10240)) // GNU tar's record padding
		root := t.TempDir()
		mustDo(t, apply(t, root, buf.Bytes(), ApplyOptions{}))
		if b, err := os.ReadFile(filepath.Join(root, "l")); err != nil || string(b) != "z" {
			t.Errorf("%v: link = %q, %v", format, b, err)
		}
		if fi, _ := os.Stat(root); fi.Mode().Perm() == 0o700 {
			t.Errorf("%v: the root entry changed the root's mode", format)
		}
	}
}

func TestApplyCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Apply(ctx, t.TempDir(), bytes.NewReader(makeTar(t, file("x", "x"))), ApplyOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Apply after cancel = %v", err)
	}
	if _, err := Apply(context.Background(), t.TempDir(), io.LimitReader(bytes.NewReader(makeTar(t, file("x", "xyz"))), 514), ApplyOptions{}); err == nil {
		t.Error("Apply of a truncated tar succeeded")
	}
}

// ForHost (--output type=local) never puts devices, setuid/setgid bits or
// file capabilities on the host, even as real root.
func TestApplyForHost(t *testing.T) {
	root := t.TempDir()
	data := makeTar(t,
		dir("bin/"),
		ent{name: "bin/su", typ: tar.TypeReg, mode: 0o4755, body: "suid"},
		ent{name: "bin/sg", typ: tar.TypeReg, mode: 0o2755, body: "sgid"},
		ent{name: "bin/ping", typ: tar.TypeReg, mode: 0o755, body: "cap", xattrs: map[string]string{"security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"}},
		ent{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
		ent{name: "dev-null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		ent{name: "dev-sda", typ: tar.TypeBlock, mode: 0o660, major: 8, minor: 0},
		ent{name: "fifo", typ: tar.TypeFifo, mode: 0o644},
	)
	if err := apply(t, root, data, ApplyOptions{ForHost: true, IgnoreChownErrors: true, IgnoreXattrErrors: true}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{"bin/su": 0o755, "bin/sg": 0o755, "bin/ping": 0o755, "tmp": 0o777 | os.ModeSticky | os.ModeDir} {
		fi, err := os.Lstat(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky | os.ModeDir); got != want {
			t.Errorf("%s: mode %v, want %v", name, got, want)
		}
	}
	for _, name := range []string{"dev-null", "dev-sda"} {
		if _, err := os.Lstat(filepath.Join(root, name)); !os.IsNotExist(err) {
			t.Errorf("%s: a device node reached the host: %v", name, err)
		}
	}
	if fi, err := os.Lstat(filepath.Join(root, "fifo")); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("fifo: %v %v", fi, err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(root, "bin/ping"), "security.capability", make([]byte, 64)); err == nil {
		t.Error("a file capability reached the host")
	}
}
