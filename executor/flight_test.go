package executor

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/builder-dev/builder/dockerfile"
	"github.com/builder-dev/builder/layer"
	"github.com/builder-dev/builder/platform"
)

var arm64 = platform.Platform{OS: "linux", Architecture: "arm64"}

// binfmtWithAarch64 is a binfmt_misc directory as the kernel shows it with
// Debian's qemu-aarch64 handler registered.
func binfmtWithAarch64(t *testing.T, flags string) string {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "status"), []byte("enabled\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "qemu-aarch64"), []byte("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: "+flags+
		"\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n"), 0o644)
	return dir
}

// buildPlatforms builds df for each target at once, with executors that
// share a Flight, as a multi-platform build does.
func (h *harness) buildPlatforms(df string, targets []platform.Platform, cfg func(*Config)) ([]string, []error) {
	h.t.Helper()
	f, err := dockerfile.Parse(strings.NewReader(df), "Dockerfile")
	if err != nil {
		h.t.Fatal(err)
	}
	flight := &Flight{}
	outs := make([]string, len(targets))
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, p := range targets {
		plan, err := f.Plan(dockerfile.PlanOptions{Platform: p, BuildPlatform: amd64})
		if err != nil {
			h.t.Fatal(err)
		}
		ts := time.Unix(1700000000, 0).UTC()
		var out bytes.Buffer
		c := Config{Blobs: h.blobs, Resolver: h.resolver, WorkDir: filepath.Join(h.t.TempDir(), "work"),
			Context: h.ctxDir, Snapshots: h.snaps, Runner: h.runner, Cache: h.index,
			Compression: layer.Compression{}, Timestamp: &ts, Out: &out, Flight: flight}
		if cfg != nil {
			cfg(&c)
		}
		ex, err := New(c)
		if err != nil {
			h.t.Fatal(err)
		}
		defer ex.Close()
		wg.Go(func() {
			_, errs[i] = ex.Build(context.Background(), plan, p)
			outs[i] = out.String()
		})
	}
	wg.Wait()
	return outs, errs
}

func TestFlightSharesBuildPlatformStage(t *testing.T) {
	for _, noCache := range []bool{false, true} {
		h := newHarness(t)
		h.resolver.img = baseImage()
		dir := binfmtWithAarch64(t, "PF")
		outs, errs := h.buildPlatforms(`FROM --platform=$BUILDPLATFORM base AS build
RUN write /out built
FROM base
ARG TARGETARCH
COPY --from=build /out /out
RUN write /t target
`, []platform.Platform{amd64, arm64}, func(c *Config) { c.NoCache, c.BinfmtDir = noCache, dir })
		for i, err := range errs {
			if err != nil {
				t.Fatalf("no-cache=%v: platform %d: %v\n%s", noCache, i, err, outs[i])
			}
		}
		// The build stage's key is the same for both targets: it ran once.
		// The final stage's RUN reads TARGETARCH: once per target.
		cmds := h.runner.commands()
		slices.Sort(cmds)
		if want := []string{"write /out built", "write /t target", "write /t target"}; !slices.Equal(cmds, want) {
			t.Errorf("no-cache=%v: RUNs %q, want %q\n%s", noCache, cmds, want, strings.Join(outs, "\n"))
		}
		if n := strings.Count(strings.Join(outs, ""), "in this build)"); n != 1 {
			t.Errorf("no-cache=%v: %d steps taken from the other platform, want 1\n%s", noCache, n, strings.Join(outs, "\n"))
		}
	}
}

func TestRunPlatformChecks(t *testing.T) {
	cases := []struct {
		name   string
		target platform.Platform
		binfmt func(t *testing.T) string
		want   string // "" = builds
	}{
		{"emulated with F", arm64, func(t *testing.T) string { return binfmtWithAarch64(t, "PF") }, ""},
		{"handler without F", arm64, func(t *testing.T) string { return binfmtWithAarch64(t, "P") }, "fix-binary"},
		{"no handler", arm64, func(t *testing.T) string {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "status"), []byte("enabled\n"), 0o644)
			return dir
		}, "linux/arm64"},
		// A container does not see binfmt_misc: the node's handlers may serve
		// it all the same, so the RUN is tried.
		{"binfmt_misc not visible", arm64, func(t *testing.T) string { return t.TempDir() }, ""},
		{"windows", platform.Platform{OS: "windows", Architecture: "amd64"}, func(t *testing.T) string { return t.TempDir() }, "linux only"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			dir := c.binfmt(t)
			outs, errs := h.buildPlatforms("FROM base\nRUN write /x y\n", []platform.Platform{c.target}, func(cfg *Config) { cfg.BinfmtDir = dir })
			switch {
			case c.want == "" && errs[0] != nil:
				t.Fatalf("%v\n%s", errs[0], outs[0])
			case c.want != "" && (errs[0] == nil || !strings.Contains(errs[0].Error(), c.want)):
				t.Fatalf("want an error with %q, got %v", c.want, errs[0])
			case c.want != "" && len(h.runner.commands()) != 0:
				t.Fatalf("RUN ran: %q", h.runner.commands())
			}
		})
	}
}
