package dockerfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/builder-dev/builder/platform"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// caseOptions is testdata/<case>/args.json: the PlanOptions of a case.
type caseOptions struct {
	Target        string            `json:"target"`
	BuildArgs     map[string]string `json:"buildArgs"`
	Platform      string            `json:"platform"`
	BuildPlatform string            `json:"buildPlatform"`
}

// loadCase reads a case directory: Dockerfile, optional args.json and
// optional images.json (image reference -> BaseConfig handed to Lower; an
// image not listed gets the zero config).
func loadCase(t *testing.T, dir string) ([]byte, PlanOptions, map[string]BaseConfig) {
	t.Helper()
	df, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	opts := PlanOptions{
		Platform:      platform.Platform{OS: "linux", Architecture: "amd64"},
		BuildPlatform: platform.Platform{OS: "linux", Architecture: "amd64"},
	}
	var co caseOptions
	if readJSON(t, filepath.Join(dir, "args.json"), &co) {
		opts.Target, opts.BuildArgs = co.Target, co.BuildArgs
		for _, p := range []struct {
			s   string
			dst *platform.Platform
		}{{co.Platform, &opts.Platform}, {co.BuildPlatform, &opts.BuildPlatform}} {
			if p.s != "" {
				if *p.dst, err = platform.Parse(p.s); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	images := map[string]BaseConfig{}
	readJSON(t, filepath.Join(dir, "images.json"), &images)
	return df, opts, images
}

func readJSON(t *testing.T, name string, v any) bool {
	t.Helper()
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return true
}

// build runs Parse, Plan and Lower over every planned stage the way an
// executor would: a stage's base config is its image's config, or the
// parent stage's resulting config (its last Meta config, else its base).
func build(t *testing.T, df []byte, opts PlanOptions, images map[string]BaseConfig) (string, error) {
	t.Helper()
	var out strings.Builder
	f, err := Parse(bytes.NewReader(df), "Dockerfile")
	if err != nil {
		return "", err
	}
	for _, w := range f.Warnings {
		fmt.Fprintf(&out, "warning %s\n", w)
	}
	p, err := f.Plan(opts)
	if err != nil {
		return out.String(), err
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(&out, "plan-warning %s\n", w)
	}
	if len(p.UnusedArgs) > 0 {
		fmt.Fprintf(&out, "unused-args %s\n", strings.Join(p.UnusedArgs, " "))
	}
	results := map[int]BaseConfig{}
	for _, s := range p.Stages {
		base := images[s.Base.Image]
		from := "image:" + s.Base.Image
		if s.Base.Stage >= 0 {
			base = results[s.Base.Stage]
			from = fmt.Sprintf("stage:%d", s.Base.Stage)
		}
		if s.Base.Platform != nil {
			from += " from-platform=" + s.Base.Platform.String()
		}
		fmt.Fprintf(&out, "stage %d name=%q at=%s base=%s platform=%s deps=%v\n",
			s.Index, s.Name, s.At, from, s.Platform.String(), s.Deps)
		steps, err := p.Lower(s, base)
		if err != nil {
			return out.String(), err
		}
		again, err := p.Lower(s, base)
		if err != nil || Dump(base, again) != Dump(base, steps) {
			t.Errorf("stage %d: Lower is not repeatable (err %v)", s.Index, err)
		}
		for _, line := range strings.SplitAfter(Dump(base, steps), "\n") {
			if line != "" {
				out.WriteString("  " + line)
			}
		}
		results[s.Index] = ConfigAfter(base, steps)
	}
	return out.String(), nil
}

func caseDirs(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != "negative" && e.Name() != "fuzz" {
			dirs = append(dirs, e.Name())
		}
	}
	if len(dirs) == 0 {
		t.Fatalf("no cases under %s", root)
	}
	return dirs
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(name, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("%v (run go test ./dockerfile/ -update)", err)
	}
	if string(want) != got {
		t.Errorf("%s mismatch (run with -update and review the diff)\n--- want\n%s\n--- got\n%s", name, want, got)
	}
}

func TestGoldenPlans(t *testing.T) {
	for _, name := range caseDirs(t, "testdata") {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join("testdata", name)
			df, opts, images := loadCase(t, dir)
			got, err := build(t, df, opts, images)
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			checkGolden(t, filepath.Join(dir, "plan.golden"), got)
		})
	}
}

var errPrefix = regexp.MustCompile(`^Dockerfile:[1-9][0-9]*: `)

func TestGoldenErrors(t *testing.T) {
	root := filepath.Join("testdata", "negative")
	for _, name := range caseDirs(t, root) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(root, name)
			df, opts, images := loadCase(t, dir)
			_, err := build(t, df, opts, images)
			if err == nil {
				t.Fatal("expected an error")
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *dockerfile.Error: %v", err, err)
			}
			got := err.Error() + "\n"
			if !errPrefix.MatchString(got) {
				t.Errorf("error does not start with Dockerfile:N: %q", got)
			}
			if strings.Count(got, "line ") > 0 && strings.Contains(got, "parse error on line") {
				t.Errorf("error repeats the line prefix: %q", got)
			}
			checkGolden(t, filepath.Join(dir, "error.golden"), got)
		})
	}
}
