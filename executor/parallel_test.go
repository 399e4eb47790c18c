package executor

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/builder-dev/builder/executor/sandbox"
	"github.com/builder-dev/builder/image"
	digest "github.com/opencontainers/go-digest"
)

const parallelDockerfile = `FROM base AS a
COPY a.txt /a.txt
RUN write /a/built a
FROM base AS b
COPY b.txt /b.txt
RUN write /b/built b
FROM base
COPY --from=a /a /a
COPY --from=b /b /b
RUN write /final yes
`

// rendezvousRunner runs the RUNs of stages a and b like shellRunner, but
// each waits until the other has started: with stages one after the other
// it fails, so the build only succeeds if they really run at once.
func rendezvousRunner() *fakeRunner {
	shell := shellRunner()
	started := map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}
	var once sync.Map
	return &fakeRunner{do: func(o sandbox.SpecOptions) error {
		cmd := o.Args[len(o.Args)-1]
		for me, other := range map[string]string{"a": "b", "b": "a"} {
			if cmd != "write /"+me+"/built "+me {
				continue
			}
			if _, loaded := once.LoadOrStore(me, true); !loaded {
				close(started[me])
			}
			select {
			case <-started[other]:
			case <-time.After(20 * time.Second):
				return &sandbox.ExitError{Code: 99}
			}
		}
		return shell.do(o)
	}}
}

func imageID(t *testing.T, img *image.Image) digest.Digest {
	t.Helper()
	id, err := img.ID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestParallelStages(t *testing.T) {
	build := func(jobs int, runner *fakeRunner) (*image.Image, string) {
		h := newHarness(t)
		h.file("a.txt", "A")
		h.file("b.txt", "B")
		if runner != nil {
			h.runner = runner
		}
		img, out, err := h.build(parallelDockerfile, func(c *Config) { c.Jobs = jobs })
		if err != nil {
			t.Fatalf("--jobs %d: %v\n%s", jobs, err, out)
		}
		return img, out
	}
	serial, _ := build(1, nil)
	parallel, out := build(2, rendezvousRunner())
	if s, p := imageID(t, serial), imageID(t, parallel); s != p {
		t.Errorf("image ID %s with --jobs 2, %s with --jobs 1", p, s)
	}
	if len(parallel.Layers) != len(serial.Layers) {
		t.Fatalf("%d layers with --jobs 2, %d with --jobs 1", len(parallel.Layers), len(serial.Layers))
	}
	for i := range serial.Layers {
		if s, p := serial.Layers[i].Descriptor().Digest, parallel.Layers[i].Descriptor().Digest; s != p {
			t.Errorf("layer %d: %s with --jobs 2, %s with --jobs 1", i, p, s)
		}
	}
	// Lines of stages running at once say their stage.
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "Cache miss") || strings.Contains(l, "STEP") {
			if !strings.HasPrefix(l, "[") {
				t.Errorf("line without its stage: %q", l)
			}
		}
	}
}

// A warm parallel build says which stage each cache hit belongs to.
func TestParallelCacheLinesTagged(t *testing.T) {
	h := newHarness(t)
	h.file("a.txt", "A")
	h.file("b.txt", "B")
	for range 2 {
		if _, out, err := h.build(parallelDockerfile, func(c *Config) { c.Jobs = 2 }); err != nil {
			t.Fatalf("%v\n%s", err, out)
		} else if strings.Contains(out, "Using cache") {
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, "Using cache") && !strings.HasPrefix(l, "[") {
					t.Errorf("line without its stage: %q", l)
				}
			}
			if !strings.Contains(out, "[1/3] --> Using cache") || !strings.Contains(out, "[2/3] --> Using cache") {
				t.Errorf("cache lines not tagged by stage:\n%s", out)
			}
			return
		}
	}
	t.Fatal("the second build took nothing from the cache")
}

func TestParallelStageFailure(t *testing.T) {
	h := newHarness(t)
	h.file("a.txt", "A")
	h.file("b.txt", "B")
	df := strings.Replace(parallelDockerfile, "RUN write /a/built a", "RUN fail", 1)
	_, out, err := h.build(df, func(c *Config) { c.Jobs = 4 })
	if err == nil {
		t.Fatalf("build with a failing stage succeeded:\n%s", out)
	}
	if !strings.Contains(err.Error(), "RUN fail") {
		t.Errorf("error %q does not name the failing step", err)
	}
	for _, c := range h.runner.commands() {
		if c == "write /final yes" {
			t.Errorf("the final stage ran after its dependency failed")
		}
	}
}

// With --jobs 1 stages run in the plan's order, as before.
func TestJobsOneKeepsOrder(t *testing.T) {
	h := newHarness(t)
	h.file("a.txt", "A")
	h.file("b.txt", "B")
	if _, out, err := h.build(parallelDockerfile, nil); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := []string{"write /a/built a", "write /b/built b", "write /final yes"}
	if got := h.runner.commands(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("RUN order %q, want %q", got, want)
	}
}
