package registry

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/image/v5/types"
)

func TestCandidates(t *testing.T) {
	conf := func(body string) *types.SystemContext {
		dir := t.TempDir()
		p := filepath.Join(dir, "registries.conf")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return &types.SystemContext{
			SystemRegistriesConfPath:    p,
			SystemRegistriesConfDirPath: filepath.Join(dir, "d"),
			UserShortNameAliasConfPath:  filepath.Join(dir, "aliases.conf"),
		}
	}
	one := conf(`unqualified-search-registries = ["r1.example"]
short-name-mode = "enforcing"
[aliases]
"tool" = "quay.io/team/tool"
`)
	two := conf(`unqualified-search-registries = ["r1.example", "r2.example:5000"]
short-name-mode = "enforcing"
`)
	permissive := conf(`unqualified-search-registries = ["r1.example", "r2.example:5000"]
short-name-mode = "permissive"
`)
	none := conf("unqualified-search-registries = []\n")
	tests := []struct {
		name    string
		sys     *types.SystemContext
		in      string
		want    string // candidates joined by " "
		wantErr string
	}{
		{"qualified", none, "quay.io/a/b", "quay.io/a/b:latest", ""},
		{"qualified port digest", none, "localhost:5000/a@sha256:" + strings.Repeat("a", 64), "localhost:5000/a@sha256:" + strings.Repeat("a", 64), ""},
		{"docker transport", none, "docker://alpine:3", "docker.io/library/alpine:3", ""},
		{"search", one, "app:v1", "r1.example/app:v1", ""},
		{"alias", one, "tool:2", "quay.io/team/tool:2", ""},
		{"ambiguous", two, "app", "", `short name "app" is ambiguous: it may mean r1.example/app:latest, r2.example:5000/app:latest`},
		{"permissive", permissive, "app", "r1.example/app:latest r2.example:5000/app:latest", ""},
		{"no registries", none, "app", "", "no unqualified-search registries"},
		{"invalid", none, "app:in valid", "", "invalid image name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := (&Puller{Sys: tc.sys}).candidates(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, c := range got {
				s = append(s, c.String())
			}
			if strings.Join(s, " ") != tc.want {
				t.Errorf("candidates = %v, want %s", s, tc.want)
			}
		})
	}
}
