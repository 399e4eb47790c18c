package executor

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/builder-dev/builder/dockerfile"
)

// FuzzOneSelection builds a tree, .dockerignore patterns and --exclude
// patterns from the input and checks that COPY writes exactly the paths
// the cache key covers, and that a context bind mount shows them too.
// Input: lines "f:PATH", "d:PATH", "l:PATH>TARGET", "i:PATTERN" (ignore),
// "x:PATTERN" (exclude).
func FuzzOneSelection(f *testing.F) {
	for _, seed := range []string{
		"f:a/b/c.log\nf:a/keep.txt\nf:.env\nl:envlink>.env\ni:.env\nx:**/*.log",
		"f:secret/key\nf:secret/public.txt\nl:app/s>../secret\ni:secret\ni:!secret/public.txt",
		"d:empty\nf:x/y/z\ni:x\ni:!x/y\nx:x/y/z",
		"f:a.tmp\nf:dir/b.tmp\ni:**/*.tmp\nl:abs>/dir/b.tmp",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		dir := t.TempDir()
		var ignore, excludes []string
		n := 0
		for _, line := range strings.Split(in, "\n") {
			kind, arg, ok := strings.Cut(line, ":")
			if !ok || n > 40 {
				continue
			}
			switch kind {
			case "f", "d", "l":
				name, target, _ := strings.Cut(arg, ">")
				p, ok := safeRel(dir, name)
				if !ok || strings.HasPrefix(filepath.Base(p), ".wh.") {
					continue
				}
				n++
				os.MkdirAll(filepath.Dir(p), 0o755)
				switch kind {
				case "f":
					os.WriteFile(p, []byte(name), 0o644)
				case "d":
					os.MkdirAll(p, 0o755)
				case "l":
					os.Symlink(target, p)
				}
			case "i":
				ignore = append(ignore, arg)
			case "x":
				excludes = append(excludes, arg)
			}
		}
		ign, err := dockerfile.NewIgnore(ignore)
		if err != nil {
			return // a bad pattern is the user's error, reported as such
		}
		e := newTestExecutor(t, dir, ign)
		_, files, err := e.hashSelection(t.Context(), e.contextSource(), []string{"."}, excludes, false, false)
		if err != nil {
			return // e.g. a bad --exclude pattern: COPY reports the same
		}
		c, cerr := tryCopied(t, e, excludes)
		if cerr != nil {
			t.Fatalf("the key covered the selection but COPY failed: %v", cerr)
		}
		if k := coveredPaths(files, "."); !slices.Equal(c, k) {
			t.Fatalf("COPY wrote %q\nthe key covers %q", c, k)
		}
		if len(excludes) == 0 {
			if m := mounted(t, e, "."); !slices.Equal(c, m) {
				t.Fatalf("COPY wrote %q\nthe bind mount shows %q", c, m)
			}
		}
	})
}

// safeRel cleans a fuzzed path into one inside dir.
func safeRel(dir, name string) (string, bool) {
	name = filepath.Clean("/" + name)[1:]
	if name == "" || strings.ContainsAny(name, "\x00") || len(name) > 200 {
		return "", false
	}
	return filepath.Join(dir, name), true
}

// tryCopied is copied that returns COPY's error.
func tryCopied(t *testing.T, e *Executor, excludes []string) ([]string, error) {
	up := t.TempDir()
	r, err := os.OpenRoot(up)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	j := &copyJob{e: e, step: &dockerfile.Copy{Srcs: []string{"."}, Dest: "/out/", Excludes: excludes}, up: r, rootfs: r, links: map[[2]uint64]string{}}
	if err := j.run(t.Context(), e.contextSource()); err != nil {
		return nil, err
	}
	return listTree(t, filepath.Join(up, "out")), nil
}
