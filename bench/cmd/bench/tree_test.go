package main

import (
	"archive/tar"
	"path/filepath"
	"strings"
	"testing"
)

func dirE(name string, mode int64) baseEntry {
	return baseEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode}}
}

func fileE(name, data string) baseEntry {
	return baseEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data))}, data: []byte(data)}
}

func linkE(name, target string) baseEntry {
	return baseEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
}

func tree(t *testing.T, layers ...[]baseEntry) map[string]node {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	if err := writeLayout(dir, "test", layers...); err != nil {
		t.Fatal(err)
	}
	tr, err := mergedTree(dir, "latest")
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestMergedTreeWhiteouts(t *testing.T) {
	tr := tree(t,
		[]baseEntry{dirE("a", 0o755), fileE("a/x", "x"), fileE("a/y", "y"), dirE("b", 0o755), fileE("b/old", "o"), fileE("c", "c")},
		// whiteout of a/x, opaque b (its new entry stays), c replaced by a dir, a hard link
		[]baseEntry{fileE("a/.wh.x", ""), dirE("b", 0o700), fileE("b/.wh..wh..opq", ""), fileE("b/new", "n"), dirE("c", 0o755), linkE("a/y2", "a/y")},
	)
	for _, gone := range []string{"/a/x", "/b/old"} {
		if _, ok := tr[gone]; ok {
			t.Errorf("%s should be whited out", gone)
		}
	}
	for _, p := range []string{"/a/y", "/b/new", "/a/y2"} {
		if tr[p].Type != "reg" {
			t.Errorf("%s: %v, want a regular file", p, tr[p])
		}
	}
	if tr["/a/y2"].SHA256 != tr["/a/y"].SHA256 {
		t.Errorf("hard link content differs from its target")
	}
	if tr["/b"].Mode != 0o700 || tr["/c"].Type != "dir" {
		t.Errorf("b: %v, c: %v", tr["/b"], tr["/c"])
	}
}

func TestDiffTrees(t *testing.T) {
	a := tree(t, []baseEntry{dirE("etc", 0o755), fileE("etc/f", "1"), dirE("proc", 0o755)})
	b := tree(t, []baseEntry{dirE("etc", 0o755), fileE("etc/f", "2")})
	d, tol := diffTrees("run10", a, b)
	if len(d) != 1 || !strings.Contains(d[0], "/etc/f") {
		t.Errorf("diffs %q, want one for /etc/f", d)
	}
	if len(tol) != 1 || !strings.HasPrefix(tol[0], "/proc") {
		t.Errorf("tolerated %q, want /proc", tol)
	}
	if d, _ := diffTrees("run10", a, a); len(d) != 0 {
		t.Errorf("a tree differs from itself: %q", d)
	}
}
