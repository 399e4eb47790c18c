package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/builder-dev/builder/compress"
	"github.com/builder-dev/builder/content"
	digest "github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/tar/asm"
	tsstorage "github.com/vbatts/tar-split/tar/storage"
)

// tarOf writes headers (with a body of Size bytes for regular files).
func tarOf(t *testing.T, hs ...*tar.Header) ([]byte, map[string][]byte) {
	t.Helper()
	var buf bytes.Buffer
	bodies := map[string][]byte{}
	tw := tar.NewWriter(&buf)
	for _, h := range hs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b := bytes.Repeat([]byte{byte(len(h.Name))}, int(h.Size))
			tw.Write(b)
			bodies[h.Name] = b
		}
	}
	tw.Close()
	return buf.Bytes(), bodies
}

func TestOwnerScan(t *testing.T) {
	long := strings.Repeat("d/", 80) + "f"
	for _, tc := range []struct {
		name       string
		hs         []*tar.Header
		uids, gids []uint32
	}{
		{"ustar", []*tar.Header{
			{Name: "a/", Typeflag: tar.TypeDir, Mode: 0o755, Uid: 0, Gid: 0},
			{Name: "a/f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1000, Uid: 1000, Gid: 1001},
			{Name: "a/l", Typeflag: tar.TypeLink, Linkname: "a/f", Uid: 1000, Gid: 1001},
			{Name: "a/s", Typeflag: tar.TypeSymlink, Linkname: "f", Uid: 5, Gid: 6},
		}, []uint32{0, 5, 1000}, []uint32{0, 6, 1001}},
		{"pax ids and long names", []*tar.Header{
			{Name: long, Typeflag: tar.TypeReg, Mode: 0o644, Size: 513, Uid: 100000000, Gid: 2, Format: tar.FormatPAX},
			{Name: "g", Typeflag: tar.TypeReg, Mode: 0o644, Size: 0, Uid: 3, Gid: 200000000, Format: tar.FormatPAX,
				PAXRecords: map[string]string{"comment": strings.Repeat("x", 700)}},
		}, []uint32{3, 100000000}, []uint32{2, 200000000}},
		{"empty", nil, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, _ := tarOf(t, tc.hs...)
			o := newOwnerScan()
			for len(data) > 0 { // odd chunks: headers split across writes
				n := min(len(data), 77)
				o.Write(data[:n])
				data = data[n:]
			}
			u, g, ok := o.owners()
			if !ok || !slices.Equal(u, tc.uids) || !slices.Equal(g, tc.gids) {
				t.Errorf("owners %v %v %v, want %v %v", u, g, ok, tc.uids, tc.gids)
			}
		})
	}
}

// The tar-split made while writing a scratch tar gives the same bytes back
// from the files, as a store does.
func TestWriteMakesTarSplit(t *testing.T) {
	data, bodies := tarOf(t,
		&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "d/a", Typeflag: tar.TypeReg, Mode: 0o644, Size: 70000, Uid: 7, Gid: 8, Format: tar.FormatPAX},
		&tar.Header{Name: "d/.wh.gone", Typeflag: tar.TypeReg, Mode: 0o644},
		&tar.Header{Name: "d/b", Typeflag: tar.TypeReg, Mode: 0o600, Size: 3},
	)
	blobs, err := content.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l, err := Write(context.Background(), blobs, Compression{Kind: compress.None, RawDir: t.TempDir()}, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	st := l.(*Stored)
	if st.Split == nil {
		t.Fatal("no tar-split made")
	}
	if !slices.Equal(st.Split.UIDs, []uint32{0, 7}) || !slices.Equal(st.Split.GIDs, []uint32{0, 8}) {
		t.Errorf("owners %v %v", st.Split.UIDs, st.Split.GIDs)
	}
	f, err := os.Open(st.Split.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	getter := tsstorage.NewBufferFileGetPutter()
	for n, b := range bodies {
		getter.Put(n, bytes.NewReader(b))
	}
	rc := asm.NewOutputTarStream(getter, tsstorage.NewJSONUnpacker(f))
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Error("the tar-split does not give the tar back")
	}
}

// SplitOnly keeps no scratch tar: the tree and the tar-split give it back.
func TestSplitOnlyAssemblesFromTree(t *testing.T) {
	data, bodies := tarOf(t,
		&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "d/a", Typeflag: tar.TypeReg, Mode: 0o644, Size: 70000},
		&tar.Header{Name: "d/.wh.gone", Typeflag: tar.TypeReg, Mode: 0o644},
		&tar.Header{Name: "d/b", Typeflag: tar.TypeReg, Mode: 0o600, Size: 3},
	)
	tree := t.TempDir()
	os.Mkdir(filepath.Join(tree, "d"), 0o755)
	for n, b := range bodies {
		os.WriteFile(filepath.Join(tree, n), b, 0o644)
	}
	raw := t.TempDir()
	blobs, err := content.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l, err := Write(context.Background(), blobs, Compression{Kind: compress.None, RawDir: raw, SplitOnly: true}, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if tars, _ := filepath.Glob(filepath.Join(raw, "*.tar")); len(tars) != 0 {
		t.Errorf("a scratch tar was kept: %v", tars)
	}
	st := l.(*Stored)
	st.Tree = func() (string, bool) { return tree, true }
	rc, err := l.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("assembled tar differs (err %v)", err)
	}
	// A tree whose file changed gives an error, never other bytes.
	os.WriteFile(filepath.Join(tree, "d", "b"), []byte("XYZ"), 0o600)
	rc, _ = l.Open(context.Background())
	if _, err := io.ReadAll(rc); err == nil {
		t.Error("a changed tree file was assembled without an error")
	}
	rc.Close()
}

func TestSplitReader(t *testing.T) {
	data, bodies := tarOf(t,
		&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "d/a", Typeflag: tar.TypeReg, Mode: 0o644, Size: 70000, Uid: 7, Gid: 9},
		&tar.Header{Name: "d/l", Typeflag: tar.TypeSymlink, Linkname: "a", Uid: 0, Gid: 0},
	)
	tree := t.TempDir()
	os.Mkdir(filepath.Join(tree, "d"), 0o755)
	for n, b := range bodies {
		os.WriteFile(filepath.Join(tree, n), b, 0o644)
	}
	right := digest.FromBytes(data)
	for _, c := range []struct {
		name   string
		diffID digest.Digest
		read   int // bytes read before Close; -1: all
		kept   bool
	}{
		{"whole stream, its digest", right, -1, true},
		{"read in part", right, 1024, false},
		{"another digest", digest.FromString("not this layer"), -1, false},
		{"no digest", "", -1, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "split")
			os.WriteFile(path, nil, 0o600) // as the caller's temporary file
			var got *TarSplit
			var size int64
			r := SplitReader(io.NopCloser(bytes.NewReader(data)), c.diffID, path, func(ts *TarSplit, n int64) { got, size = ts, n })
			if c.read < 0 {
				io.Copy(io.Discard, r)
			} else {
				io.CopyN(io.Discard, r, int64(c.read))
			}
			r.Close()
			if !c.kept {
				if got != nil {
					t.Fatal("a tar-split was kept")
				}
				if _, err := os.Stat(path); !os.IsNotExist(err) {
					t.Errorf("the tar-split file was left behind: %v", err)
				}
				return
			}
			if got == nil {
				t.Fatal("no tar-split kept")
			}
			if size != int64(len(data)) || !got.Owners || !slices.Equal(got.UIDs, []uint32{0, 7}) || !slices.Equal(got.GIDs, []uint32{0, 9}) {
				t.Errorf("size %d (want %d), owners %v %v %v", size, len(data), got.Owners, got.UIDs, got.GIDs)
			}
			rc, err := got.Assemble(func() (string, bool) { return tree, true })
			if err != nil {
				t.Fatal(err)
			}
			out, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(out, data) {
				t.Errorf("the kept tar-split does not give the tar back (err %v)", err)
			}
		})
	}
}
