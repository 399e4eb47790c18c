package executor

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/builder-dev/builder/dockerfile"
	"github.com/builder-dev/builder/executor/selection"
	digest "github.com/opencontainers/go-digest"
)

// hostileContext is a context with ignored files, symlinks to ignored
// files and directories, re-included paths, nested logs for ** and a
// temp directory for --exclude.
func hostileContext(t *testing.T) (string, *dockerfile.Ignore) {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"app/main.go": "package main", "app/a/b/c.log": "log", "app/a/b/keep.txt": "keep", "app/x.log": "x",
		"app/tmp/scratch": "s", ".env": "SECRET=1", "secret/key": "k", "secret/public.txt": "p",
		"build.tmp": "t", "app/deep/er/z.tmp": "z", "Dockerfile": "FROM scratch",
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range map[string]string{
		"envlink": ".env", "app/secretlink": "../secret", "app/keylink": "/secret/key", "publink": "secret/public.txt",
	} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	ign, err := dockerfile.NewIgnore([]string{".env", "secret", "!secret/public.txt", "**/*.tmp"})
	if err != nil {
		t.Fatal(err)
	}
	return dir, ign
}

func newTestExecutor(t *testing.T, contextDir string, ign *dockerfile.Ignore) *Executor {
	t.Helper()
	root, err := os.OpenRoot(contextDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return &Executor{cfg: Config{Context: contextDir, Ignore: ign, WorkDir: t.TempDir()}, ctxRoot: root, chownOK: probeChown(t.TempDir())}
}

// listTree lists the paths under dir (relative, "." for dir itself).
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// copied runs COPY srcs dest into an empty upper dir and lists what it
// wrote under dest.
func copied(t *testing.T, e *Executor, srcs, excludes []string) []string {
	t.Helper()
	up := t.TempDir()
	r, err := os.OpenRoot(up)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	j := &copyJob{e: e, step: &dockerfile.Copy{Srcs: srcs, Dest: "/out/", Excludes: excludes}, up: r, rootfs: r, links: map[[2]uint64]string{}}
	if err := j.run(context.Background(), e.contextSource()); err != nil {
		t.Fatal(err)
	}
	return listTree(t, filepath.Join(up, "out"))
}

// keyCovers is what the cache key of the same COPY covers: the
// selection's paths, relative to the copied directory.
func keyCovers(t *testing.T, e *Executor, src string, excludes []string) []string {
	t.Helper()
	_, files, err := e.hashSelection(context.Background(), e.contextSource(), []string{src}, excludes, false, false)
	if err != nil {
		t.Fatal(err)
	}
	return coveredPaths(files, src)
}

// coveredPaths lists the paths of a key's file list relative to src, with
// their parents: a re-included path below an ignored directory is covered
// by its path, and its parents are new directories in every tree made
// from it.
func coveredPaths(files map[string]digest.Digest, src string) []string {
	set := map[string]bool{".": true}
	for p := range files {
		rel, _ := filepath.Rel(src, p)
		for ; rel != "." && !set[rel]; rel = filepath.Dir(rel) {
			set[rel] = true
		}
	}
	out := slices.Collect(maps.Keys(set))
	slices.Sort(out)
	return out
}

// mounted is what a context bind mount of src shows.
func mounted(t *testing.T, e *Executor, src string) []string {
	t.Helper()
	s := e.contextSource()
	it, err := s.Item(src)
	if err != nil {
		t.Fatal(err)
	}
	view := filepath.Join(t.TempDir(), "view")
	if err := e.materialize(context.Background(), s, &it, view, true); err != nil {
		t.Fatal(err)
	}
	return listTree(t, view)
}

// COPY, the cache key and a context bind mount see one selection.
func TestOneSelection(t *testing.T) {
	dir, ign := hostileContext(t)
	e := newTestExecutor(t, dir, ign)
	for _, tc := range []struct {
		name     string
		src      string
		excludes []string
	}{
		{"whole context", ".", nil},
		{"a directory", "app", nil},
		{"with excludes", "app", []string{"**/*.log", "tmp"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, k := copied(t, e, []string{tc.src}, tc.excludes), keyCovers(t, e, tc.src, tc.excludes)
			if !slices.Equal(c, k) {
				t.Errorf("COPY wrote %q\nthe key covers %q", c, k)
			}
			if tc.excludes == nil {
				if m := mounted(t, e, tc.src); !slices.Equal(c, m) {
					t.Errorf("COPY wrote %q\nthe bind mount shows %q", c, m)
				}
			}
			for _, p := range c {
				for _, hidden := range []string{".env", "secret/key", "build.tmp", "z.tmp"} {
					if p == hidden || strings.HasSuffix(p, "/"+hidden) {
						t.Errorf("%s is ignored but selected", p)
					}
				}
				if tc.excludes != nil && (strings.HasSuffix(p, ".log") || strings.HasPrefix(p, "tmp")) {
					t.Errorf("%s is excluded but selected", p)
				}
			}
		})
	}
	// Symlinks inside a copied directory stay links; re-included files
	// come with their parents; links to ignored paths dangle.
	got := strings.Join(copied(t, e, []string{"."}, nil), " ")
	for _, want := range []string{"envlink", "app/secretlink", "secret/public.txt", "publink"} {
		if !strings.Contains(" "+got+" ", " "+want+" ") {
			t.Errorf("%s missing from %s", want, got)
		}
	}
}

// A named source that is (or leads through) a symlink to an ignored path
// does not exist, for COPY, the key and a bind mount alike.
func TestIgnoredThroughLinks(t *testing.T) {
	dir, ign := hostileContext(t)
	e := newTestExecutor(t, dir, ign)
	for _, src := range []string{".env", "envlink", "secret", "app/secretlink", "app/secretlink/key", "app/keylink", "build.tmp"} {
		up := t.TempDir()
		r, _ := os.OpenRoot(up)
		j := &copyJob{e: e, step: &dockerfile.Copy{Srcs: []string{src}, Dest: "/x"}, up: r, rootfs: r, links: map[[2]uint64]string{}}
		err := j.run(context.Background(), e.contextSource())
		r.Close()
		if !errors.Is(err, selection.ErrNotFound) || !strings.Contains(err.Error(), "excluded by .dockerignore") {
			t.Errorf("COPY %s: %v; want excluded by .dockerignore", src, err)
		}
		if _, _, err := e.hashSelection(context.Background(), e.contextSource(), []string{src}, nil, false, false); err == nil {
			t.Errorf("key of COPY %s: no error", src)
		}
		if _, err := e.contextSource().Item(src); err == nil {
			t.Errorf("bind mount of %s: no error", src)
		}
		if names := listTree(t, up); len(names) != 1 {
			t.Errorf("COPY %s wrote %q", src, names)
		}
	}
	// A link to a re-included file is that file.
	if got := copied(t, e, []string{"publink"}, nil); !slices.Equal(got, []string{".", "publink"}) {
		t.Errorf("COPY publink wrote %q", got)
	}
}
