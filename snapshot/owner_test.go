package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Without chown, Apply records the owner an entry should have, and the
// layer writer puts it back in the header; an archive cannot set the
// record itself, and no layer carries it.
func TestRecordedOwners(t *testing.T) {
	var in bytes.Buffer
	tw := tar.NewWriter(&in)
	for _, h := range []*tar.Header{
		{Name: "app/", Typeflag: tar.TypeDir, Mode: 0o755, Uid: 1000, Gid: 1000, Format: tar.FormatPAX},
		{Name: "app/mine", Typeflag: tar.TypeReg, Mode: 0o644, Uid: 1000, Gid: 1000, Size: 1, Format: tar.FormatPAX},
		{Name: "roots", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1, Format: tar.FormatPAX},
		// A hostile archive claiming an owner through the record.
		{Name: "forged", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1, Format: tar.FormatPAX,
			PAXRecords: map[string]string{paxXattr + OwnerXattr: "4242:4242"}},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("x"))
		}
	}
	tw.Close()
	dir := t.TempDir()
	if _, err := Apply(context.Background(), dir, &in, ApplyOptions{NoChown: true, IgnoreXattrErrors: true}); err != nil {
		t.Fatal(err)
	}
	if v, err := unix.Lgetxattr(filepath.Join(dir, "app/mine"), OwnerXattr, make([]byte, 64)); err != nil || v == 0 {
		t.Fatalf("no owner recorded for app/mine: %v", err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(dir, "forged"), OwnerXattr, make([]byte, 64)); err == nil {
		t.Fatal("an archive set the owner record")
	}
	if _, err := unix.Lgetxattr(filepath.Join(dir, "roots"), OwnerXattr, make([]byte, 64)); err == nil {
		t.Fatal("root's file got a record")
	}
	uid, gid := os.Geteuid(), os.Getegid()
	var out bytes.Buffer
	err := WriteTar(context.Background(), &out, dir, WriteOptions{RecordedOwners: true, MapOwner: func(u, g int) (int, int) {
		if u == uid {
			u = 0
		}
		if g == gid {
			g = 0
		}
		return u, g
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]int{"app/": {1000, 1000}, "app/mine": {1000, 1000}, "roots": {0, 0}, "forged": {0, 0}}
	tr := tar.NewReader(&out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if w, ok := want[h.Name]; ok && (h.Uid != w[0] || h.Gid != w[1]) {
			t.Errorf("%s: %d:%d, want %d:%d", h.Name, h.Uid, h.Gid, w[0], w[1])
		}
		if _, ok := h.PAXRecords[paxXattr+OwnerXattr]; ok {
			t.Errorf("%s: the owner record leaked into the layer", h.Name)
		}
	}
}
