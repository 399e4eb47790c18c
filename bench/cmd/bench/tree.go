package main

// The correctness check: the merged file tree of an image in an OCI
// layout (layers applied in order, whiteouts honoured), compared between
// the two tools on path, type, mode, uid/gid, size, content sha256, link
// target and device numbers. Modification times are not compared.

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/builder-dev/builder/compress"
)

type node struct {
	Type     string // dir, reg, symlink, char, block, fifo
	Mode     int64  // permission and setuid/setgid/sticky bits
	UID, GID int
	Size     int64
	SHA256   string
	Link     string
	Major    int64
	Minor    int64
	Implicit bool // a parent directory no layer has an entry for
}

func (n node) String() string {
	s := fmt.Sprintf("%s %04o %d:%d", n.Type, n.Mode, n.UID, n.GID)
	switch n.Type {
	case "reg":
		s += fmt.Sprintf(" size=%d sha256=%.12s", n.Size, n.SHA256)
	case "symlink":
		s += " -> " + n.Link
	case "char", "block":
		s += fmt.Sprintf(" %d,%d", n.Major, n.Minor)
	}
	if n.Implicit {
		s += " (implicit)"
	}
	return s
}

type ociDesc struct {
	MediaType   string                             `json:"mediaType"`
	Digest      string                             `json:"digest"`
	Size        int64                              `json:"size"`
	Platform    *struct{ OS, Architecture string } `json:"platform,omitempty"`
	Annotations map[string]string                  `json:"annotations,omitempty"`
}

type ociManifest struct {
	MediaType string    `json:"mediaType"`
	Config    ociDesc   `json:"config"`
	Layers    []ociDesc `json:"layers"`
	Manifests []ociDesc `json:"manifests"`
}

func blobPath(layout, dgst string) string {
	alg, hexd, _ := strings.Cut(dgst, ":")
	return filepath.Join(layout, "blobs", alg, hexd)
}

// layoutLayers returns the layer descriptors of the image in layout (the
// only one, or the one tagged tag; of an index, its first linux image).
func layoutLayers(layout, tag string) ([]ociDesc, error) {
	return platformLayers(layout, tag, "")
}

// platformLayers is layoutLayers for platform ("os/arch") of an index
// ("": the first linux image).
func platformLayers(layout, tag, platform string) ([]ociDesc, error) {
	pick, err := taggedDesc(layout, tag)
	if err != nil {
		return nil, err
	}
	for depth := 0; depth < 4; depth++ {
		m, err := readManifest(layout, pick.Digest)
		if err != nil {
			return nil, err
		}
		if len(m.Manifests) == 0 {
			if platform != "" && depth == 0 {
				return nil, fmt.Errorf("%s: %q is one image, not an index of %s", layout, tag, platform)
			}
			return m.Layers, nil
		}
		pick = nil
		for i, c := range m.Manifests {
			if c.Platform == nil {
				continue
			}
			if p := c.Platform.OS + "/" + c.Platform.Architecture; p == platform || (platform == "" && c.Platform.OS == "linux") {
				pick = &m.Manifests[i]
				break
			}
		}
		if pick == nil {
			if platform != "" {
				return nil, fmt.Errorf("%s: the index tagged %q has no %s image", layout, tag, platform)
			}
			pick = &m.Manifests[0]
		}
	}
	return nil, fmt.Errorf("%s: index nesting too deep", layout)
}

// taggedDesc is the descriptor index.json names tag (or its only one).
func taggedDesc(layout, tag string) (*ociDesc, error) {
	data, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err != nil {
		return nil, err
	}
	var idx ociManifest
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("%s/index.json: %w", layout, err)
	}
	for i, m := range idx.Manifests {
		if len(idx.Manifests) == 1 || m.Annotations["org.opencontainers.image.ref.name"] == tag {
			return &idx.Manifests[i], nil
		}
	}
	return nil, fmt.Errorf("%s: no image tagged %q", layout, tag)
}

func readManifest(layout, dgst string) (ociManifest, error) {
	var m ociManifest
	data, err := os.ReadFile(blobPath(layout, dgst))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("manifest %s: %w", dgst, err)
	}
	return m, nil
}

// layoutPlatforms lists the platforms ("os/arch", sorted, repeats kept) of
// the index tagged tag in layout.
func layoutPlatforms(layout, tag string) ([]string, error) {
	d, err := taggedDesc(layout, tag)
	if err != nil {
		return nil, err
	}
	m, err := readManifest(layout, d.Digest)
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) == 0 {
		return nil, fmt.Errorf("%s: %q is one image, not an index", layout, tag)
	}
	var out []string
	for _, c := range m.Manifests {
		if c.Platform == nil {
			return nil, fmt.Errorf("%s: index entry %s has no platform", layout, c.Digest)
		}
		out = append(out, c.Platform.OS+"/"+c.Platform.Architecture)
	}
	sort.Strings(out)
	return out, nil
}

// openLayer returns the uncompressed tar stream of a layer blob.
func openLayer(layout string, d ociDesc) (io.ReadCloser, error) {
	f, err := os.Open(blobPath(layout, d.Digest))
	if err != nil {
		return nil, err
	}
	r, _, err := compress.Decompress(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{r, closers{r, f}}, nil
}

type closers []io.Closer

func (c closers) Close() error {
	var first error
	for _, x := range c {
		if err := x.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// mergedTree applies the image's layers in order.
func mergedTree(layout, tag string) (map[string]node, error) {
	return mergedTreeFor(layout, tag, "")
}

// mergedTreeFor is mergedTree of the platform image of an index ("": the
// first linux one, or the only image).
func mergedTreeFor(layout, tag, platform string) (map[string]node, error) {
	layers, err := platformLayers(layout, tag, platform)
	if err != nil {
		return nil, err
	}
	tree := map[string]node{"/": {Type: "dir", Mode: 0o755, Implicit: true}}
	removeTree := func(p string, keepSelf bool) {
		if !keepSelf {
			delete(tree, p)
		}
		prefix := strings.TrimSuffix(p, "/") + "/"
		for k := range tree {
			if strings.HasPrefix(k, prefix) {
				delete(tree, k)
			}
		}
	}
	for _, l := range layers {
		rc, err := openLayer(layout, l)
		if err != nil {
			return nil, err
		}
		type ent struct {
			name string
			n    node
			link string // hard link target
		}
		var adds []ent
		var whiteouts, opaques []string
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				rc.Close()
				return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
			}
			name := path.Clean("/" + h.Name)
			dir, base := path.Split(name)
			dir = path.Clean(dir)
			if base == ".wh..wh..opq" {
				opaques = append(opaques, dir)
				continue
			}
			if strings.HasPrefix(base, ".wh.") {
				whiteouts = append(whiteouts, path.Join(dir, strings.TrimPrefix(base, ".wh.")))
				continue
			}
			n := node{Mode: h.Mode & 0o7777, UID: h.Uid, GID: h.Gid}
			e := ent{name: name}
			switch h.Typeflag {
			case tar.TypeDir:
				n.Type = "dir"
			case tar.TypeReg, tar.TypeRegA:
				n.Type, n.Size = "reg", h.Size
				sum := sha256.New()
				if _, err := io.Copy(sum, tr); err != nil {
					rc.Close()
					return nil, err
				}
				n.SHA256 = hex.EncodeToString(sum.Sum(nil))
			case tar.TypeSymlink:
				n.Type, n.Link = "symlink", h.Linkname
			case tar.TypeLink:
				e.link = path.Clean("/" + h.Linkname)
			case tar.TypeChar, tar.TypeBlock:
				n.Type, n.Major, n.Minor = "char", h.Devmajor, h.Devminor
				if h.Typeflag == tar.TypeBlock {
					n.Type = "block"
				}
			case tar.TypeFifo:
				n.Type = "fifo"
			default:
				continue // pax/gnu headers are consumed by the reader
			}
			e.n = n
			adds = append(adds, e)
		}
		rc.Close()
		// Whiteouts hide what lower layers hold; this layer's own entries stay.
		for _, w := range whiteouts {
			removeTree(w, false)
		}
		for _, o := range opaques {
			removeTree(o, true)
		}
		for _, e := range adds {
			if e.link != "" {
				t, ok := tree[e.link]
				if !ok {
					return nil, fmt.Errorf("layer %s: hard link %s to missing %s", l.Digest, e.name, e.link)
				}
				e.n = t
				e.n.Implicit = false
			}
			if old, ok := tree[e.name]; ok && old.Type == "dir" && e.n.Type != "dir" {
				removeTree(e.name, false)
			}
			if e.n.Type != "dir" {
				removeTree(e.name, true)
			}
			tree[e.name] = e.n
			for p := path.Dir(e.name); p != "/"; p = path.Dir(p) {
				if _, ok := tree[p]; ok {
					break
				}
				tree[p] = node{Type: "dir", Mode: 0o755, Implicit: true}
			}
		}
	}
	return tree, nil
}

// skipRule is a documented difference the check tolerates.
type skipRule struct {
	cas  string // the case it applies to ("": every case)
	path string // exact path
	why  string
}

// skips: empty files and directories present on one side only that the
// check tolerates, with the reason. The RUN mount points are what buildah
// (runc) may leave in an image and builder does not.
var skips = []skipRule{
	{"", "/dev", "mount point runc creates for RUN"},
	{"", "/proc", "mount point runc creates for RUN"},
	{"", "/sys", "mount point runc creates for RUN"},
	{"", "/run", "mount point buildah creates for RUN"},
	{"", "/etc/hosts", "file buildah bind-mounts for RUN"},
	{"", "/etc/resolv.conf", "file buildah bind-mounts for RUN"},
	{"", "/etc/hostname", "file buildah bind-mounts for RUN"},
	{"", "/run/.containerenv", "file buildah bind-mounts for RUN"},
	{"meta", "/srv", "WORKDIR with no later RUN/COPY: buildah 1.28 does not create the directory, builder does (as docker does)"},
}

// skipped reports whether p, as node n, is on the skip list.
func skipped(cas, p string, n node) (string, bool) {
	if n.Type == "dir" || (n.Type == "reg" && n.Size == 0) {
		for _, s := range skips {
			if s.path == p && (s.cas == "" || s.cas == cas) {
				return s.why, true
			}
		}
	}
	return "", false
}

// diffTrees lists the differences between a (builder) and b (buildah) of
// case cas, and the tolerated ones.
func diffTrees(cas string, a, b map[string]node) (diffs, tolerated []string) {
	diffs, tolerated, _ = diffTreesExcept(cas, a, b, nil)
	return diffs, tolerated
}

// diffTreesExcept is diffTrees where excuse, when not nil, may excuse a
// path both trees hold with different nodes; excused lists those paths
// and why.
func diffTreesExcept(cas string, a, b map[string]node, excuse func(p string) (string, bool)) (diffs, tolerated, excused []string) {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var out []string
	for _, k := range sorted {
		if why, ok := skipped(cas, k, a[k]); ok && inOne(k, a, b) {
			tolerated = append(tolerated, k+": "+why)
			continue
		}
		if why, ok := skipped(cas, k, b[k]); ok && inOne(k, a, b) {
			tolerated = append(tolerated, k+": "+why)
			continue
		}
		x, inA := a[k]
		y, inB := b[k]
		switch {
		case inA && !inB:
			out = append(out, fmt.Sprintf("only builder: %s %v", k, x))
		case !inA && inB:
			out = append(out, fmt.Sprintf("only buildah: %s %v", k, y))
		default:
			if x.Implicit || y.Implicit {
				// Metadata of a directory no layer describes is unspecified.
				if x.Type == y.Type {
					continue
				}
			}
			x.Implicit, y.Implicit = false, false
			if x != y {
				if excuse != nil {
					if why, ok := excuse(k); ok {
						excused = append(excused, k+": "+why)
						continue
					}
				}
				out = append(out, fmt.Sprintf("differs: %s\n    builder: %v\n    buildah: %v", k, x, y))
			}
		}
	}
	return out, tolerated, excused
}

func inOne(k string, a, b map[string]node) bool {
	_, inA := a[k]
	_, inB := b[k]
	return inA != inB
}

// ownLayers is the layers after the first skip (of the platform image of
// an index, "": the only image or the first linux one).
func ownLayers(layout, tag, platform string, skip int) ([]ociDesc, error) {
	layers, err := platformLayers(layout, tag, platform)
	if err != nil {
		return nil, err
	}
	if skip > len(layers) {
		skip = len(layers)
	}
	return layers[skip:], nil
}
