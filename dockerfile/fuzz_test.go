package dockerfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that Parse, Plan and Lower never panic, that every error
// is positioned, and that lowering is repeatable. The seeds are the golden
// Dockerfiles (valid and negative).
func FuzzParse(f *testing.F) {
	for _, glob := range []string{"testdata/*/Dockerfile", "testdata/negative/*/Dockerfile"} {
		files, _ := filepath.Glob(glob)
		for _, name := range files {
			if b, err := os.ReadFile(name); err == nil {
				f.Add(string(b))
			}
		}
	}
	f.Add("FROM a\nONBUILD RUN x\nFROM 0\nCOPY --from=0 / /\n")
	base := BaseConfig{}
	base.Env = []string{"PATH=/bin", "HOME=/root"}
	base.OnBuild = []string{"RUN echo $HOME", "COPY --from=0 a b", "ARG X=1"}
	base.WorkingDir = "rel"
	f.Fuzz(func(t *testing.T, src string) {
		if len(src) > 1<<16 {
			return
		}
		file, err := Parse(strings.NewReader(src), "Dockerfile")
		if err != nil {
			checkPositioned(t, err)
			return
		}
		p, err := file.Plan(PlanOptions{
			BuildArgs: map[string]string{"X": "y", "http_proxy": "p"},
			Platform:  amd64,
		})
		if err != nil {
			checkPositioned(t, err)
			return
		}
		for _, s := range p.Stages {
			steps, err := p.Lower(s, base)
			if err != nil {
				checkPositioned(t, err)
				continue
			}
			again, err := p.Lower(s, base)
			if err != nil || Dump(base, again) != Dump(base, steps) {
				t.Fatalf("Lower is not repeatable for stage %d: %v", s.Index, err)
			}
		}
	})
}

func checkPositioned(t *testing.T, err error) {
	t.Helper()
	if !strings.HasPrefix(err.Error(), "Dockerfile") {
		t.Fatalf("error without position: %v", err)
	}
}
