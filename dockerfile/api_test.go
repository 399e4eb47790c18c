package dockerfile

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/builder-dev/builder/platform"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

var amd64 = platform.Platform{OS: "linux", Architecture: "amd64"}

func mustParse(t *testing.T, src string) *File {
	t.Helper()
	f, err := Parse(strings.NewReader(src), "Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func mustPlan(t *testing.T, f *File, opts PlanOptions) *Plan {
	t.Helper()
	if opts.Platform.OS == "" {
		opts.Platform = amd64
	}
	p, err := f.Plan(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const multi = `FROM alpine AS base
RUN echo base
FROM base AS build
RUN echo build
FROM golang AS other
FROM base
COPY --from=build /a /a
`

func TestPlanTargets(t *testing.T) {
	f := mustParse(t, multi)
	for _, tt := range []struct {
		target string
		want   []int
	}{
		{"", []int{0, 1, 3}},
		{"base", []int{0}},
		{"BUILD", []int{0, 1}},
		{"other", []int{2}},
		{"2", []int{2}},
		{"3", []int{0, 1, 3}},
	} {
		p := mustPlan(t, f, PlanOptions{Target: tt.target})
		var got []int
		for _, s := range p.Stages {
			got = append(got, s.Index)
		}
		if !equalInts(got, tt.want) {
			t.Errorf("target %q: stages %v, want %v", tt.target, got, tt.want)
		}
	}
	for _, bad := range []string{"nope", "4", "-1"} {
		_, err := f.Plan(PlanOptions{Target: bad})
		var pe *Error
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), `target stage "`+bad+`" could not be found`) {
			t.Errorf("target %q: err = %v", bad, err)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPlanDefaults(t *testing.T) {
	f := mustParse(t, "FROM alpine\nARG TARGETPLATFORM\nRUN true\n")
	p, err := f.Plan(PlanOptions{BuildPlatform: platform.Platform{OS: "linux", Architecture: "aarch64"}})
	if err != nil {
		t.Fatal(err)
	}
	s := p.Stages[0]
	if got := s.Platform.String(); got != "linux/arm64" {
		t.Errorf("target platform defaults to the build platform: got %s", got)
	}
	steps, err := p.Lower(s, BaseConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if m := steps[1].(*Meta); m.Text != "ARG TARGETPLATFORM=linux/arm64" {
		t.Errorf("ARG text = %q", m.Text)
	}
	if p2 := mustPlan(t, f, PlanOptions{}); p2.Stages[0].Platform.OS != "linux" {
		t.Errorf("zero platforms must default to linux, got %+v", p2.Stages[0].Platform)
	}
}

func TestLowerRejectsForeignStage(t *testing.T) {
	f := mustParse(t, multi)
	p := mustPlan(t, f, PlanOptions{Target: "base"})
	other := mustPlan(t, f, PlanOptions{Target: "other"})
	for _, s := range []*Stage{nil, other.Stages[0], {Index: 99}} {
		if _, err := p.Lower(s, BaseConfig{}); err == nil {
			t.Errorf("Lower(%v) should fail", s)
		}
	}
	// A copy of a planned stage is accepted: Lower uses the plan's own data.
	cp := *p.Stages[0]
	cp.Name = "tampered"
	if _, err := p.Lower(&cp, BaseConfig{}); err != nil {
		t.Error(err)
	}
}

// Lower must not share state between calls: run every stage many times in
// parallel (go test -race) and compare the output.
func TestLowerConcurrent(t *testing.T) {
	f := mustParse(t, `ARG V=1
FROM alpine AS a
ARG V
ENV X=$V
RUN --mount=type=cache,target=/c echo $X
FROM a
ARG V=2
COPY --from=a --chmod=644 /x /y
EXPOSE 80 81/udp
LABEL k=$V
`)
	p := mustPlan(t, f, PlanOptions{})
	base := BaseConfig{}
	base.Env = []string{"PATH=/bin"}
	base.OnBuild = []string{"RUN echo trigger", "ENV T=1"}
	want := map[int]string{}
	for _, s := range p.Stages {
		steps, err := p.Lower(s, base)
		if err != nil {
			t.Fatal(err)
		}
		want[s.Index] = Dump(base, steps)
	}
	var wg sync.WaitGroup
	for i := range 16 {
		s := p.Stages[i%len(p.Stages)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			steps, err := p.Lower(s, base)
			if err != nil {
				t.Error(err)
				return
			}
			if got := Dump(base, steps); got != want[s.Index] {
				t.Errorf("stage %d differs:\n%s\nvs\n%s", s.Index, got, want[s.Index])
			}
		}()
	}
	wg.Wait()
	if len(base.OnBuild) != 2 || len(base.Env) != 1 {
		t.Errorf("Lower modified the caller's base config: %+v", base)
	}
}

// Meta changes apply to the config they are given and share nothing with
// it or with each other: applying a prefix of the steps gives the config at
// that point, every time.
func TestMetaChanges(t *testing.T) {
	f := mustParse(t, "FROM scratch\nLABEL a=1\nLABEL b=2\nEXPOSE 80\nEXPOSE 81\n")
	p := mustPlan(t, f, PlanOptions{})
	steps, err := p.Lower(p.Stages[0], BaseConfig{})
	if err != nil {
		t.Fatal(err)
	}
	first := ConfigAfter(BaseConfig{}, steps[:2])
	if len(first.Labels) != 1 {
		t.Errorf("after the first LABEL: %v", first.Labels)
	}
	first.Labels["x"] = "y"
	if _, ok := ConfigAfter(BaseConfig{}, steps[:3]).Labels["x"]; ok {
		t.Error("applying the changes again sees another caller's map")
	}
	if n := len(ConfigAfter(BaseConfig{}, steps[:4]).ExposedPorts); n != 1 {
		t.Errorf("after the first EXPOSE: %d ports", n)
	}
	if all := ConfigAfter(BaseConfig{}, steps); len(all.Labels) != 2 || len(all.ExposedPorts) != 2 {
		t.Errorf("after all: %+v", all)
	}
}

func TestErrorShape(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{"FROM alpine\nRUN true\nFORM x\n", "Dockerfile:3: unknown instruction: FORM"},
		{"FROM alpine\nCOPY --chmod=9 a b\n", "Dockerfile:2: invalid chmod parameter"},
		{"FROM alpine\nCOPY a\n", "Dockerfile:2: COPY requires at least two arguments"},
	} {
		f, err := Parse(strings.NewReader(tt.src), "Dockerfile")
		if err == nil {
			var p *Plan
			if p, err = f.Plan(PlanOptions{}); err == nil {
				_, err = p.Lower(p.Stages[0], BaseConfig{})
			}
		}
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want prefix %q", tt.src, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), "parse error on line") {
			t.Errorf("line prefix duplicated: %v", err)
		}
		var pe *Error
		if !errors.As(err, &pe) || pe.Pos.File != "Dockerfile" || pe.Pos.Line == 0 {
			t.Errorf("not a positioned *Error: %#v", err)
		}
	}
	// The BuildKit error stays reachable through the chain.
	_, err := Parse(strings.NewReader("FROM alpine\nFORM x\n"), "Dockerfile")
	var le *parser.LocationError
	if !errors.As(err, &le) {
		t.Errorf("errors.As(*parser.LocationError) failed for %v", err)
	}
}

func TestParseName(t *testing.T) {
	_, err := Parse(strings.NewReader("FROM alpine\nBOGUS\n"), "build/Containerfile")
	if err == nil || !strings.HasPrefix(err.Error(), "build/Containerfile:2: ") {
		t.Errorf("err = %v", err)
	}
	f := mustParse(t, "FROM alpine AS Mixed\n")
	if f.Name != "Dockerfile" || len(f.Warnings) != 1 || f.Warnings[0].Rule != "StageNameCasing" || f.Warnings[0].At.Line != 1 {
		t.Errorf("warnings = %+v", f.Warnings)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("boom") }

func TestParseReadError(t *testing.T) {
	_, err := Parse(failingReader{}, "Dockerfile")
	var pe *Error
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "boom") {
		t.Errorf("err = %v", err)
	}
}

func TestUnusedArgs(t *testing.T) {
	f := mustParse(t, "ARG META\nFROM alpine\nARG INSTAGE\nFROM busybox AS pruned\nARG ELSEWHERE\nFROM scratch\n")
	p := mustPlan(t, f, PlanOptions{BuildArgs: map[string]string{
		"META": "1", "INSTAGE": "2", "ELSEWHERE": "3", "ZZZ": "4", "AAA": "5",
		"HTTPS_PROXY": "p", "TARGETOS": "linux", "SOURCE_DATE_EPOCH": "1",
	}})
	if got := strings.Join(p.UnusedArgs, ","); got != "AAA,ZZZ" {
		t.Errorf("UnusedArgs = %q", got)
	}
}

func TestEntrypointKeepsCmdFromSameStage(t *testing.T) {
	f := mustParse(t, "FROM base\nCMD [\"a\"]\nENTRYPOINT [\"e\"]\nFROM base AS two\nENTRYPOINT [\"e\"]\n")
	base := BaseConfig{}
	base.Cmd = []string{"inherited"}
	base.Env = []string{"PATH=/bin"}
	for target, want := range map[string]string{"0": "a", "two": ""} {
		p := mustPlan(t, f, PlanOptions{Target: target})
		steps, err := p.Lower(p.Stages[0], base)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(ConfigAfter(base, steps).Cmd, " ")
		if got != want {
			t.Errorf("target %s: Cmd = %q, want %q", target, got, want)
		}
	}
}

func TestOnBuildCleared(t *testing.T) {
	f := mustParse(t, "FROM base\nRUN true\n")
	p := mustPlan(t, f, PlanOptions{})
	base := BaseConfig{}
	base.Env = []string{"PATH=/bin"}
	base.OnBuild = []string{"LABEL from=trigger"}
	steps, err := p.Lower(p.Stages[0], base)
	if err != nil {
		t.Fatal(err)
	}
	first, ok := steps[0].(*Meta)
	if !ok || !first.NoHistory || ConfigAfter(base, steps[:1]).OnBuild != nil {
		t.Fatalf("first step must be the normalised base, got %s", Dump(base, steps[:1]))
	}
	label := steps[1].(*Meta)
	if label.Text != "LABEL from=trigger" || label.At.Line != 1 || ConfigAfter(base, steps[:2]).OnBuild != nil {
		t.Errorf("trigger step = %s", Dump(base, steps[1:2]))
	}
}
