package executor

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/builder-dev/builder/dockerfile"
	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/platform"
	"github.com/builder-dev/builder/snapshot"
)

// extractSpy is a driver that notes what Extract was asked for.
type extractSpy struct {
	snapshot.Driver
	mu    sync.Mutex
	calls int
	done  chan struct{} // closed by the first Extract
}

func (x *extractSpy) Extract(ctx context.Context, layers []snapshot.Layer) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.calls++; x.calls == 1 {
		close(x.done)
	}
	return nil
}

func (x *extractSpy) count() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.calls
}

func TestGate(t *testing.T) {
	const local = "oci:/layouts/base:latest"
	for _, tc := range []struct {
		name      string
		df        string
		baseAhead bool
		gateErr   error
		// waitAhead: the gate opens only once the target's base is being
		// extracted (the test fails if that never happens).
		waitAhead bool
		extracts  int
		squash    bool
		// told: the layer counts ImageLayers is told.
		told []int
	}{
		{name: "target's local base extracted at the gate", df: "FROM " + local + " AS a\nCOPY a.txt /a\nFROM " + local + "\nCOPY --from=a /a /a\nRUN write /x y\n",
			baseAhead: true, waitAhead: true, extracts: 2, told: []int{2}},
		{name: "not bound for the store", df: "FROM " + local + "\nCOPY a.txt /a\nRUN write /x y\n", extracts: 0},
		{name: "a registry base is not read ahead", df: "FROM busybox\nCOPY a.txt /a\nRUN write /x y\n", baseAhead: true, extracts: 0, told: []int{2}},
		{name: "another stage's base is not", df: "FROM oci:/layouts/tools:latest AS a\nCOPY a.txt /a\nFROM " + local + "\nCOPY --from=a /a /a\nRUN write /x y\n",
			baseAhead: true, extracts: 1, told: []int{2}},
		{name: "squashed: the layers made are not the image's", df: "FROM " + local + "\nCOPY a.txt /a\nRUN write /x y\n",
			baseAhead: true, squash: true, extracts: 1},
		{name: "the gate's error ends the build before its first step", df: "FROM " + local + "\nCOPY a.txt /a\n",
			baseAhead: true, gateErr: errors.New("RUN cannot run here"), extracts: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.file("a.txt", "A")
			spy := &extractSpy{Driver: h.snaps, done: make(chan struct{})}
			h.snaps = spy
			var printed []string
			var outAtGate func() string
			gate := func(ctx context.Context) error {
				printed = append(printed, outAtGate())
				if tc.waitAhead {
					select {
					case <-spy.done:
					case <-time.After(20 * time.Second):
						return errors.New("the base was not extracted while the stage waited at the gate")
					}
				}
				return tc.gateErr
			}
			var toldMu sync.Mutex
			var told []int
			_, out, err := h.build(tc.df, func(c *Config) {
				c.Gate, c.BaseAhead, c.Squash = gate, tc.baseAhead, tc.squash
				c.ImageLayers = func(ls []image.Layer) {
					toldMu.Lock()
					defer toldMu.Unlock()
					told = append(told, len(ls))
				}
				outAtGate = func() string { return c.Out.(interface{ String() string }).String() }
			})
			switch {
			case tc.gateErr != nil:
				if !errors.Is(err, tc.gateErr) {
					t.Fatalf("err = %v, want the gate's", err)
				}
				if out != "" {
					t.Errorf("steps printed before the gate's error:\n%s", out)
				}
			case err != nil:
				t.Fatalf("%v\n%s", err, out)
			}
			if printed[0] != "" {
				t.Errorf("printed before the gate opened:\n%s", printed[0])
			}
			if got := spy.count(); got != tc.extracts {
				t.Errorf("Extract called %d times, want %d", got, tc.extracts)
			}
			// Told of the image's layers at the RUN.
			if !slices.Equal(told, tc.told) {
				t.Errorf("ImageLayers told of %v layers, want %v", told, tc.told)
			}
		})
	}
}

func TestTargetBase(t *testing.T) {
	arm := platform.Platform{OS: "linux", Architecture: "arm64"}
	for _, tc := range []struct {
		name, df string
		want     resolved
	}{
		{"one stage", "FROM alpine\n", resolved{"alpine", amd64}},
		{"through stages", "FROM alpine AS a\nFROM a AS b\nFROM b\n", resolved{"alpine", amd64}},
		{"the target's chain, not the others", "FROM golang AS build\nFROM alpine\nCOPY --from=build /x /x\n", resolved{"alpine", amd64}},
		{"scratch", "FROM golang AS build\nFROM scratch\nCOPY --from=build /x /x\n", resolved{}},
		{"its platform", "FROM --platform=linux/arm64 alpine AS a\nFROM a\n", resolved{"alpine", arm}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := dockerfile.Parse(strings.NewReader(tc.df), "Dockerfile")
			if err != nil {
				t.Fatal(err)
			}
			p, err := f.Plan(dockerfile.PlanOptions{Platform: amd64, BuildPlatform: amd64})
			if err != nil {
				t.Fatal(err)
			}
			if got := targetBase(p, amd64); got != tc.want {
				t.Errorf("targetBase = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// The image's layers are told when every stage running is inside a RUN's
// process, and only those not told yet.
func TestHandover(t *testing.T) {
	var told []int
	h := &handover{tell: func(ls []image.Layer) { told = append(told, len(ls)) }}
	layers := func(n int) []image.Layer { return make([]image.Layer, n) }
	h.stage(1)
	h.stage(1)
	h.known(layers(1)) // the base, extracted ahead
	h.run(1)           // one stage in its RUN, the other looking layers up
	if len(told) != 0 {
		t.Fatalf("told %v while a stage was not in a RUN", told)
	}
	h.run(1)
	h.run(-1)
	h.run(-1)
	h.stage(-1)
	h.stage(-1)
	h.stage(1)         // the target stage
	h.known(layers(3)) // two layers committed
	h.known(layers(2)) // an older report changes nothing
	h.run(1)           // alone, in its RUN
	h.run(-1)
	h.run(1) // nothing new
	if !slices.Equal(told, []int{1, 3}) {
		t.Errorf("told %v, want [1 3]", told)
	}
	var none *handover // no ImageLayers: every call is a no-op
	none.stage(1)
	none.known(layers(1))
	none.run(1)
}
