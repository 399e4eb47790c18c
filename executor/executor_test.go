package executor

// Unit tests of the executor's step logic with fakes: a runner that
// "runs" RUN steps in Go, an in-memory cache index, an in-memory base
// image, the copy snapshot driver on a temp dir. No sandbox, no store.

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/builder-dev/builder/cache"
	"github.com/builder-dev/builder/content"
	"github.com/builder-dev/builder/dockerfile"
	"github.com/builder-dev/builder/executor/sandbox"
	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/image/imagetest"
	"github.com/builder-dev/builder/layer"
	"github.com/builder-dev/builder/platform"
	"github.com/builder-dev/builder/snapshot"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var amd64 = platform.Platform{OS: "linux", Architecture: "amd64"}

// fakeRunner records every RUN and runs it with do, which may change the
// rootfs.
type fakeRunner struct {
	mu   sync.Mutex
	runs []sandbox.SpecOptions
	do   func(o sandbox.SpecOptions) error
}

func (f *fakeRunner) Spec(o sandbox.SpecOptions) (*specs.Spec, error) {
	f.mu.Lock()
	f.runs = append(f.runs, o)
	f.mu.Unlock()
	return &specs.Spec{Root: &specs.Root{Path: o.Rootfs}, Process: &specs.Process{Args: o.Args, Env: o.Env, Cwd: o.Cwd}}, nil
}

func (f *fakeRunner) Run(ctx context.Context, spec *specs.Spec, stdin io.Reader, stdout, stderr io.Writer) error {
	f.mu.Lock()
	o := f.runs[len(f.runs)-1]
	f.mu.Unlock()
	if f.do != nil {
		return f.do(o)
	}
	return nil
}

func (f *fakeRunner) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.runs {
		out = append(out, r.Args[len(r.Args)-1])
	}
	return out
}

// shellRunner understands "write PATH CONTENT" and "rm PATH" commands
// (joined by " && "), enough to give RUN steps real effects.
func shellRunner() *fakeRunner {
	return &fakeRunner{do: func(o sandbox.SpecOptions) error {
		for _, c := range strings.Split(o.Args[len(o.Args)-1], " && ") {
			f := strings.Fields(c)
			switch {
			case len(f) == 3 && f[0] == "write":
				p := filepath.Join(o.Rootfs, f[1])
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, []byte(f[2]), 0o644); err != nil {
					return err
				}
			case len(f) == 2 && f[0] == "rm":
				if err := os.RemoveAll(filepath.Join(o.Rootfs, f[1])); err != nil {
					return err
				}
			case len(f) == 1 && f[0] == "fail":
				return &sandbox.ExitError{Code: 3}
			}
		}
		return nil
	}}
}

// memIndex is an in-memory cache index.
type memIndex struct {
	mu    sync.Mutex
	recs  map[string]cache.Record
	files map[string]map[string]digest.Digest
}

func newMemIndex() *memIndex {
	return &memIndex{recs: map[string]cache.Record{}, files: map[string]map[string]digest.Digest{}}
}

func (m *memIndex) Get(k cache.Key, ttl time.Duration) (cache.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.recs[k.Hex()]
	if !ok {
		return cache.Record{}, cache.ErrMiss
	}
	return r, nil
}

func (m *memIndex) Put(r cache.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs[r.Key] = r
	return nil
}

func (m *memIndex) PutFiles(k cache.Key, files map[string]digest.Digest) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[k.Hex()] = files
	return nil
}

func (m *memIndex) Files(k cache.Key) map[string]digest.Digest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.files[k.Hex()]
}

func (m *memIndex) Children(parent cache.Key) []cache.Record {
	all, _ := m.List()
	var out []cache.Record
	for _, r := range all {
		if r.Parent == parent.Hex() {
			out = append(out, r)
		}
	}
	return out
}

func (m *memIndex) List() ([]cache.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []cache.Record
	for _, r := range m.recs {
		out = append(out, r)
	}
	return out, nil
}

// fakeResolver serves one in-memory base image under any name but "nope".
type fakeResolver struct {
	mu    sync.Mutex
	img   *image.Image
	asked []string
}

func (f *fakeResolver) Resolve(ctx context.Context, ref string, p platform.Platform) (*image.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, ref+" "+p.String())
	if ref == "nope" {
		return nil, errors.New("no such image")
	}
	img := *f.img
	return &img, nil
}

func baseImage() *image.Image {
	l := imagetest.MustLayer(image.Gzip,
		imagetest.File{Name: "etc/", Type: tar.TypeDir},
		imagetest.File{Name: "etc/passwd", Body: "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"},
		imagetest.File{Name: "etc/group", Body: "root:x:0:\napp:x:1000:\n"},
		imagetest.File{Name: "data/", Type: tar.TypeDir},
		imagetest.File{Name: "data/old", Body: "old"},
	)
	img := imagetest.NewImage(ocispec.Platform{OS: "linux", Architecture: "amd64"}, l)
	img.ManifestDigest = digest.FromString("base manifest")
	img.Config.Config.Env = []string{"PATH=/usr/bin:/bin"}
	img.Config.Config.OnBuild = nil
	img.Config.History = img.Config.History[:1]
	return img
}

// harness builds Dockerfiles in a context with fakes around the executor.
type harness struct {
	t        *testing.T
	ctxDir   string
	blobs    *content.Store
	snaps    snapshot.Driver
	index    *memIndex
	runner   *fakeRunner
	resolver *fakeResolver
	args     map[string]string // build args
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	blobs, err := content.OpenStore(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := snapshot.Open("copy", filepath.Join(t.TempDir(), "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, ctxDir: t.TempDir(), blobs: blobs, snaps: snaps, index: newMemIndex(),
		runner: shellRunner(), resolver: &fakeResolver{img: baseImage()}}
}

func (h *harness) file(name, data string) {
	p := filepath.Join(h.ctxDir, name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// build builds df and returns the image and the progress output.
func (h *harness) build(df string, cfg func(*Config)) (*image.Image, string, error) {
	h.t.Helper()
	f, err := dockerfile.Parse(strings.NewReader(df), "Dockerfile")
	if err != nil {
		h.t.Fatal(err)
	}
	plan, err := f.Plan(dockerfile.PlanOptions{Platform: amd64, BuildPlatform: amd64, BuildArgs: h.args})
	if err != nil {
		h.t.Fatal(err)
	}
	var out bytes.Buffer
	ts := time.Unix(1700000000, 0).UTC()
	c := Config{Blobs: h.blobs, Resolver: h.resolver, WorkDir: filepath.Join(h.t.TempDir(), "work"),
		Context: h.ctxDir, Snapshots: h.snaps, Runner: h.runner, Cache: h.index,
		Compression: layer.Compression{}, Timestamp: &ts, Out: &out, Jobs: 1}
	if cfg != nil {
		cfg(&c)
	}
	ex, err := New(c)
	if err != nil {
		h.t.Fatal(err)
	}
	defer ex.Close()
	img, err := ex.Build(context.Background(), plan, amd64)
	return img, out.String(), err
}

// history is the image's created_by lines after the base's.
func history(img *image.Image) []string {
	var out []string
	for _, hst := range img.Config.History[1:] {
		mark := ""
		if hst.EmptyLayer {
			mark = " (empty)"
		}
		out = append(out, hst.CreatedBy+mark)
	}
	return out
}

// layerFiles lists the entries of img's layer i.
func layerFiles(t *testing.T, img *image.Image, i int) []string {
	t.Helper()
	rc, err := layer.Uncompressed(context.Background(), img.Layers[i])
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out []string
	tr := tar.NewReader(rc)
	for {
		hd, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, hd.Name)
	}
}

func TestStepSequencing(t *testing.T) {
	h := newHarness(t)
	h.file("f.txt", "from context")
	img, out, err := h.build(`FROM base AS a
RUN write /a/built a
FROM base AS b
COPY f.txt /f
RUN write /b/built b
FROM a
COPY --from=b /f /g
RUN write /final yes
`, nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// Stages in dependency order, steps in order within each.
	if got, want := h.runner.commands(), []string{"write /a/built a", "write /b/built b", "write /final yes"}; !slices.Equal(got, want) {
		t.Errorf("RUN order %q, want %q", got, want)
	}
	var steps []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "STEP") {
			steps = append(steps, l)
		}
	}
	want := []string{
		"[1/3] STEP 1/2: FROM base AS a", "[1/3] STEP 2/2: RUN write /a/built a",
		"[2/3] STEP 1/3: FROM base AS b", "[2/3] STEP 2/3: COPY f.txt /f", "[2/3] STEP 3/3: RUN write /b/built b",
		"[3/3] STEP 1/3: FROM a", "[3/3] STEP 2/3: COPY --from=b /f /g", "[3/3] STEP 3/3: RUN write /final yes",
	}
	if !slices.Equal(steps, want) {
		t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(steps, "\n"), strings.Join(want, "\n"))
	}
	// The final image: base + a's RUN + COPY --from + RUN, nothing of b.
	if got, want := history(img), []string{"RUN write /a/built a", "COPY --from=b /f /g", "RUN write /final yes"}; !slices.Equal(got, want) {
		t.Errorf("history %q, want %q", got, want)
	}
	if len(img.Layers) != 4 || len(img.Config.RootFS.DiffIDs) != 4 {
		t.Fatalf("%d layers, %d diff IDs; want 4", len(img.Layers), len(img.Config.RootFS.DiffIDs))
	}
	if got := layerFiles(t, img, 2); !slices.Equal(got, []string{"g"}) {
		t.Errorf("COPY --from layer holds %q", got)
	}
	if err := imagetest.Verify(context.Background(), img); err != nil {
		t.Error(err)
	}
	// FROM base was resolved once per (reference, platform).
	if got := h.resolver.asked; !slices.Equal(got, []string{"base linux/amd64"}) {
		t.Errorf("resolver asked %q", got)
	}
}

func TestStepFailures(t *testing.T) {
	for _, tc := range []struct{ name, df, want string }{
		{"failing RUN", "FROM base\nRUN fail\n", "Dockerfile:2: RUN fail: exit status 3"},
		{"missing source", "FROM base\nCOPY nope /x\n", "Dockerfile:2: COPY: build context: file not found: nope"},
		{"unknown base", "FROM nope\n", "Dockerfile:1: FROM nope: no such image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			_, out, err := h.build(tc.df, nil)
			var de *dockerfile.Error
			if !errors.As(err, &de) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a Dockerfile error %q\n%s", err, tc.want, out)
			}
		})
	}
}

func TestConfigChanges(t *testing.T) {
	h := newHarness(t)
	img, out, err := h.build(`FROM base
ENV A=1 B="two words"
LABEL org.example.x=y
USER app
WORKDIR /srv/app
EXPOSE 8080/tcp
CMD ["serve"]
RUN write /srv/app/out done
`, nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	c := img.Config.Config
	if !slices.Contains(c.Env, "A=1") || !slices.Contains(c.Env, "B=two words") || c.Labels["org.example.x"] != "y" ||
		c.User != "app" || c.WorkingDir != "/srv/app" || !slices.Equal(c.Cmd, []string{"serve"}) {
		t.Errorf("config %+v", c)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("ports %v", c.ExposedPorts)
	}
	// Config-only steps leave empty history; WORKDIR of a missing
	// directory and RUN make layers.
	want := []string{
		"ENV A=1 B=two words (empty)", "LABEL org.example.x=y (empty)", "USER app (empty)",
		"WORKDIR /srv/app", "EXPOSE 8080/tcp (empty)", `CMD ["serve"] (empty)`, "RUN write /srv/app/out done",
	}
	if got := history(img); !slices.Equal(got, want) {
		t.Errorf("history:\n%q\nwant\n%q", got, want)
	}
	if len(img.Layers) != 3 {
		t.Errorf("%d layers, want base + WORKDIR + RUN", len(img.Layers))
	}
	// RUN saw the config so far: its env, user and directory.
	r := h.runner.runs[0]
	if r.Cwd != "/srv/app" || r.UID != 1000 || r.GID != 1000 || !slices.Contains(r.Env, "B=two words") || !slices.Contains(r.Env, "HOME=/home/app") {
		t.Errorf("RUN got cwd %q uid %d gid %d env %q", r.Cwd, r.UID, r.GID, r.Env)
	}
}

func TestCacheHitsAndMisses(t *testing.T) {
	h := newHarness(t)
	h.file("app/main.txt", "v1")
	h.file("other.txt", "x")
	df := `FROM base
COPY app /app
RUN write /app/built yes
ENV MODE=fast
RUN write /mode fast
`
	first, out, err := h.build(df, nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if n := len(h.runner.runs); n != 2 {
		t.Fatalf("first build ran %d RUNs", n)
	}
	// Unchanged: every step hits, nothing runs, same image.
	second, out, err := h.build(df, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(h.runner.runs); n != 2 || strings.Count(out, "--> Using cache") != 3 || !strings.Contains(out, "Cache: 3 hit(s), 0 miss(es)") {
		t.Errorf("unchanged rebuild ran %d RUNs in all:\n%s", len(h.runner.runs), out)
	}
	if !slices.Equal(first.Config.RootFS.DiffIDs, second.Config.RootFS.DiffIDs) {
		t.Error("cache hits changed the layers")
	}
	// A file outside the selection changed: still all hits.
	h.file("other.txt", "y")
	if _, out, _ = h.build(df, nil); strings.Count(out, "--> Using cache") != 3 {
		t.Errorf("an unselected file invalidated the cache:\n%s", out)
	}
	// A selected file changed: COPY and every step after it miss.
	h.file("app/main.txt", "v2")
	_, out, err = h.build(df, func(c *Config) { c.ExplainCache = true })
	if err != nil {
		t.Fatal(err)
	}
	if n := len(h.runner.runs); n != 4 || strings.Contains(out, "--> Using cache") {
		t.Errorf("after an edit: %d RUNs in all:\n%s", n, out)
	}
	if !strings.Contains(out, "--> Cache miss: file app/main.txt changed") {
		t.Errorf("the miss is not explained:\n%s", out)
	}
	// Back to v1: hits again (both versions are cached).
	h.file("app/main.txt", "v1")
	if _, out, _ = h.build(df, nil); strings.Count(out, "--> Using cache") != 3 {
		t.Errorf("reverting did not hit:\n%s", out)
	}
	// --no-cache runs everything and still fills the cache.
	before := len(h.runner.runs)
	if _, out, _ = h.build(df, func(c *Config) { c.NoCache = true }); len(h.runner.runs) != before+2 || strings.Contains(out, "Using cache") {
		t.Errorf("--no-cache: %d RUNs:\n%s", len(h.runner.runs)-before, out)
	}
}

// A step that runs again with other inputs but makes the same layer
// leaves the steps after it cached (content keys).
func TestCacheSameContent(t *testing.T) {
	h := newHarness(t)
	h.file("f.txt", "f")
	df := "FROM base\nARG V\nRUN write /same x\nCOPY f.txt /f\n"
	h.args = map[string]string{"V": "1"}
	if _, out, err := h.build(df, nil); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// Another ARG value changes the RUN's key (its environment), not its
	// layer: the COPY after it hits by content.
	h.args = map[string]string{"V": "2"}
	_, out, err := h.build(df, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.runner.commands(); !slices.Equal(got, []string{"write /same x", "write /same x"}) {
		t.Errorf("RUNs %q", got)
	}
	if !strings.Contains(out, "(same content)") {
		t.Errorf("no content hit:\n%s", out)
	}
}

// Without a cache index every step runs every time.
func TestNoCacheIndex(t *testing.T) {
	h := newHarness(t)
	for range 2 {
		if _, out, err := h.build("FROM base\nRUN write /x y\n", func(c *Config) { c.Cache = nil }); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	if n := len(h.runner.runs); n != 2 {
		t.Errorf("%d RUNs, want 2", n)
	}
}
