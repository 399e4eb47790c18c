// Package depcheck holds a test of the package boundaries of
// docs/ARCHITECTURE.md: dependencies point down, never up.
package depcheck

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/builder-dev/builder/"

type pkg struct {
	ImportPath string
	Imports    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-tags", "containers_image_openpgp exclude_graphdriver_btrfs", "-json", mod+"...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestBoundaries(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: go list of the whole module is slow")
	}
	forbidden := []struct {
		pkg     string // package path prefix (relative to the module)
		imports string // import path prefix it must not use
		why     string
	}{
		{"dockerfile", mod, "the front end is pure and knows nothing of execution (platform is its one exception)"},
		{"platform", mod, "platforms are a leaf: everything may use them"},
		{"snapshot", mod + "cache", "snapshots know nothing of the cache"},
		{"snapshot", mod + "executor", "snapshots know nothing of steps"},
		{"snapshot", mod + "dockerfile", "snapshots know nothing of Dockerfiles"},
		{"executor/sandbox", mod, "the sandbox takes only stdlib and runtime-spec types"},
		{"executor", mod + "pushers", "the executor does not deliver images"},
		{"cache", mod + "executor", "the cache knows nothing of sandboxes"},
		{"internal", mod + "cmd", "nothing imports the command"},
		{"images", mod + "build", "the image library knows nothing of builds"},
		{"images", mod + "executor", "the image library knows nothing of builds"},
		{"pushers", mod + "executor", "outputs know nothing of execution"},
	}
	// The command line is flags and printing over the library entries.
	cliMay := map[string]bool{mod + "build": true, mod + "images": true, mod + "platform": true}
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(p.ImportPath, mod)
		for _, imp := range p.Imports {
			if rel == "cmd/builder" && strings.HasPrefix(imp, mod) && !cliMay[imp] {
				t.Errorf("cmd/builder imports %s: the command line goes through the library entries (build, images, platform)", imp)
			}
			if strings.HasPrefix(imp, "github.com/moby/buildkit/") && !strings.HasPrefix(rel, "dockerfile") {
				t.Errorf("%s imports %s: only dockerfile/ may use BuildKit", rel, imp)
			}
			if imp == mod+"cmd/builder" {
				t.Errorf("%s imports cmd/builder", rel)
			}
			for _, f := range forbidden {
				if (rel == f.pkg || strings.HasPrefix(rel, f.pkg+"/")) && strings.HasPrefix(imp, f.imports) &&
					!strings.HasPrefix(imp, mod+f.pkg) && !strings.HasSuffix(imp, "test") && imp != mod+"platform" {
					t.Errorf("%s imports %s: %s", rel, imp, f.why)
				}
			}
		}
	}
}
