package tests

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// layout is an OCI image layout read with the standard library only, so the
// tests do not trust the code they test.
type layout struct {
	dir      string
	index    ocispec.Index
	manifest ocispec.Manifest
	mdigest  string
	config   map[string]any
	rawCfg   []byte
	diffs    []string // rootfs.diff_ids as read
}

func readLayout(t *testing.T, dir string) *layout {
	t.Helper()
	l := &layout{dir: dir}
	readJSON(t, filepath.Join(dir, "index.json"), &l.index)
	if len(l.index.Manifests) == 0 {
		t.Fatalf("%s: index has no manifests", dir)
	}
	d := l.index.Manifests[len(l.index.Manifests)-1]
	l.mdigest = d.Digest.String()
	readJSON(t, l.blob(d.Digest.String()), &l.manifest)
	var err error
	l.rawCfg, err = os.ReadFile(l.blob(l.manifest.Config.Digest.String()))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(l.rawCfg, &l.config); err != nil {
		t.Fatal(err)
	}
	l.diffs = diffIDs(l)
	return l
}

func (l *layout) blob(d string) string {
	alg, hex, _ := strings.Cut(d, ":")
	return filepath.Join(l.dir, "blobs", alg, hex)
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// entry is one tar header rendered for golden files.
type entry struct {
	name string
	line string
}

// layerEntries lists the entries of layer i and checks its digests.
func (l *layout) layerEntries(t *testing.T, i int) []entry {
	t.Helper()
	desc := l.manifest.Layers[i]
	f, err := os.Open(l.blob(desc.Digest.String()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	blobHash := sha256.New()
	r, done := decompress(t, desc.MediaType, io.TeeReader(f, blobHash))
	defer done()
	diffHash := sha256.New()
	tr := tar.NewReader(io.TeeReader(r, diffHash))
	var out []entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		sum := ""
		if h.Typeflag == tar.TypeReg {
			s := sha256.New()
			io.Copy(s, tr)
			sum = fmt.Sprintf(" %x", s.Sum(nil))[:13]
		}
		out = append(out, entry{name: h.Name, line: renderHeader(h) + sum})
	}
	io.Copy(io.Discard, r)
	io.Copy(io.Discard, f)
	if got := fmt.Sprintf("sha256:%x", diffHash.Sum(nil)); i >= len(l.diffs) || l.diffs[i] != got {
		t.Errorf("layer %d: diff_id in config does not match the layer's tar (%s)", i, got)
	}
	if got := fmt.Sprintf("sha256:%x", blobHash.Sum(nil)); got != desc.Digest.String() {
		t.Errorf("layer %d: blob digest %s != descriptor %s", i, got, desc.Digest)
	}
	return out
}

func renderHeader(h *tar.Header) string {
	typ := map[byte]string{tar.TypeReg: "-", tar.TypeDir: "d", tar.TypeSymlink: "l", tar.TypeLink: "h",
		tar.TypeChar: "c", tar.TypeBlock: "b", tar.TypeFifo: "p"}[h.Typeflag]
	if typ == "" {
		typ = string(h.Typeflag)
	}
	s := fmt.Sprintf("%s %05o %d:%d %d %s", typ, h.Mode&0o7777, h.Uid, h.Gid, h.Size, h.Name)
	if h.Linkname != "" {
		s += " -> " + h.Linkname
	}
	var xs []string
	for k, v := range h.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			xs = append(xs, fmt.Sprintf("%s=%q", strings.TrimPrefix(k, "SCHILY.xattr."), v))
		}
	}
	sort.Strings(xs)
	if len(xs) > 0 {
		s += " [" + strings.Join(xs, " ") + "]"
	}
	return s
}

// layerHeaders returns the tar headers of layer i.
func (l *layout) layerHeaders(t *testing.T, i int) []*tar.Header {
	t.Helper()
	var out []*tar.Header
	l.walkLayer(t, i, func(h *tar.Header, r io.Reader) { out = append(out, h) })
	return out
}

// files returns the contents of the regular files of layer i.
func (l *layout) files(t *testing.T, i int) map[string]string {
	t.Helper()
	out := map[string]string{}
	l.walkLayer(t, i, func(h *tar.Header, r io.Reader) {
		if h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(r)
			out[h.Name] = string(b)
		}
	})
	return out
}

func (l *layout) walkLayer(t *testing.T, i int, fn func(*tar.Header, io.Reader)) {
	t.Helper()
	desc := l.manifest.Layers[i]
	f, err := os.Open(l.blob(desc.Digest.String()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, done := decompress(t, desc.MediaType, f)
	defer done()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		fn(h, tr)
	}
}

// decompress wraps a layer blob reader per its media type.
func decompress(t *testing.T, mediaType string, blob io.Reader) (io.Reader, func()) {
	t.Helper()
	r := bufio.NewReader(blob)
	switch {
	case strings.HasSuffix(mediaType, "gzip"):
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatalf("%s: %v", mediaType, err)
		}
		return zr, func() {}
	case strings.HasSuffix(mediaType, "zstd"):
		zr, err := zstd.NewReader(r)
		if err != nil {
			t.Fatalf("%s: %v", mediaType, err)
		}
		return zr, zr.Close
	}
	return r, func() {}
}
