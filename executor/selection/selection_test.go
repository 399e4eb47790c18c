package selection

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/patternmatcher"
)

// ignore is a .dockerignore matcher for tests (dockerfile.Ignore's rules).
type ignore struct {
	pm *patternmatcher.PatternMatcher
}

func newIgnore(t testing.TB, pats ...string) *ignore {
	pm, err := patternmatcher.New(pats)
	if err != nil {
		t.Fatal(err)
	}
	return &ignore{pm}
}

func (i *ignore) Matches(rel string) (bool, error) { return i.pm.MatchesOrParentMatches(rel) }
func (i *ignore) HasExclusions() bool              { return i.pm.Exclusions() }

// tree makes files ("name" or "name=content"), directories ("name/") and
// symlinks ("name->target") under a new directory.
func tree(t testing.TB, entries ...string) string {
	dir := t.TempDir()
	for _, e := range entries {
		switch {
		case strings.Contains(e, "->"):
			name, target, _ := strings.Cut(e, "->")
			mkParent(t, dir, name)
			if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		case strings.HasSuffix(e, "/"):
			if err := os.MkdirAll(filepath.Join(dir, e), 0o755); err != nil {
				t.Fatal(err)
			}
		default:
			name, content, _ := strings.Cut(e, "=")
			mkParent(t, dir, name)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func mkParent(t testing.TB, dir, name string) {
	if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
		t.Fatal(err)
	}
}

func openRoot(t testing.TB, dir string, ign Matcher) *Root {
	fs, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	return &Root{FS: fs, Ignore: ign, What: "build context"}
}

func TestResolve(t *testing.T) {
	dir := tree(t,
		"etc/passwd=root", "usr/bin/busybox=bb", "bin->/usr/bin", "sh->bin/busybox",
		"rel->../../../usr/bin/busybox", "loop1->loop2", "loop2->loop1",
		".env=secret", "secret/key=k", "secret/public.txt=p", "pub->.env", "pubdir->secret",
		"pubkey->secret/public.txt", "ignoredlink->etc/passwd", "dangling->nowhere",
	)
	r := openRoot(t, dir, newIgnore(t, ".env", "secret", "!secret/public.txt", "ignoredlink"))
	tests := []struct{ in, want, err string }{
		{"etc/passwd", "etc/passwd", ""},
		{"sh", "usr/bin/busybox", ""},          // absolute link resolved inside the root
		{"bin/busybox", "usr/bin/busybox", ""}, // through a linked directory
		{"rel", "usr/bin/busybox", ""},         // ".." stops at the root
		{"/etc/../etc/passwd", "etc/passwd", ""},
		{".", ".", ""},
		{"loop1", "", "too many levels"},
		{"nope", "", "file not found: nope"},
		{"dangling", "", "file not found: dangling (at nowhere)"},
		{".env", "", "excluded by .dockerignore"},
		{"pub", "", "excluded by .dockerignore): pub (at .env)"},         // a link never brings an ignored file back
		{"pubdir", "", "excluded by .dockerignore): pubdir (at secret)"}, // ... nor an ignored directory
		{"pubdir/key", "", "excluded by .dockerignore"},
		{"secret/public.txt", "secret/public.txt", ""}, // re-included below an ignored directory
		{"pubkey", "secret/public.txt", ""},
		{"ignoredlink", "", "excluded by .dockerignore): ignoredlink"}, // an ignored link does not exist
	}
	for _, tc := range tests {
		got, err := r.Resolve(strings.TrimPrefix(tc.in, "/"))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Resolve(%q) = %q, %v; want error %q", tc.in, got, err, tc.err)
			}
			if strings.Contains(tc.err, "not found") || strings.Contains(tc.err, "excluded") {
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("Resolve(%q): %v does not wrap ErrNotFound", tc.in, err)
				}
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestItems(t *testing.T) {
	dir := tree(t, "a/b/c.txt", "a/b/d.txt", "a/x.txt", "a/y.log", "z.txt", ".env", "link->a/x.txt")
	r := openRoot(t, dir, newIgnore(t, ".env", "a/b/d.txt"))
	tests := []struct {
		pats    []string
		parents bool
		want    string // Rel:Real:Keep ...
		err     string
	}{
		{[]string{"z.txt"}, false, "z.txt:z.txt:", ""},
		{[]string{"a/*.txt", "*.txt"}, false, "a/x.txt:a/x.txt: z.txt:z.txt:", ""},
		{[]string{"a/*/*.txt"}, false, "a/b/c.txt:a/b/c.txt:", ""}, // d.txt is ignored
		{[]string{"link"}, false, "link:a/x.txt:", ""},
		{[]string{"a/./b/c.txt"}, true, "a/b/c.txt:a/b/c.txt:b/c.txt", ""},
		{[]string{"a/b/c.txt"}, true, "a/b/c.txt:a/b/c.txt:a/b/c.txt", ""},
		{[]string{"*.env"}, false, "", ""}, // an empty wildcard matches nothing, as BuildKit allows
		{[]string{"z.txt", "nomatch*"}, false, "z.txt:z.txt:", ""},
		{[]string{".env"}, false, "", "excluded by .dockerignore"},
		{[]string{"q/*"}, false, "", ""},
		{[]string{"[a"}, false, "", "bad pattern"},
	}
	for _, tc := range tests {
		items, err := r.Items(tc.pats, tc.parents)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Items(%q) = %v, %v; want error %q", tc.pats, items, err, tc.err)
			}
			continue
		}
		var got []string
		for _, it := range items {
			got = append(got, it.Rel+":"+it.Real+":"+it.Keep)
		}
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("Items(%q) = %q, %v; want %q", tc.pats, got, err, tc.want)
		}
	}
}

// walk lists what a walk of pattern visits: Sub paths, "*" marking an
// implied entry.
func walk(t *testing.T, r *Root, pattern string, excludes []string) []string {
	t.Helper()
	x, err := NewExcludes(excludes)
	if err != nil {
		t.Fatal(err)
	}
	items, err := r.Items([]string{pattern}, false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	depth := 0
	for i := range items {
		err := r.Walk(context.Background(), &items[i], x, Visitor{
			Visit: func(e *Entry) error {
				s := e.Sub
				if s == "" {
					s = "."
				}
				if e.Implied {
					s += "*"
				}
				if e.Info.IsDir() {
					depth++
				}
				got = append(got, s)
				return nil
			},
			Leave: func(e *Entry) { depth-- },
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if depth != 0 {
		t.Errorf("Visit and Leave unbalanced: %d", depth)
	}
	return got
}

func TestWalk(t *testing.T) {
	dir := tree(t, "src/a.txt", "src/b.log", "src/keep/c.txt", "src/keep/d.log", "src/deep/er/e.log",
		"src/tmp/x", "src/.env", "src/secret/key", "src/secret/public.txt", "src/envlink->.env", "src/secretlink->secret")
	r := openRoot(t, dir, newIgnore(t, "src/.env", "src/secret", "!src/secret/public.txt"))
	tests := []struct {
		name     string
		pattern  string
		excludes []string
		want     string
	}{
		{"everything selected", "src", nil,
			". a.txt b.log deep deep/er deep/er/e.log envlink keep keep/c.txt keep/d.log secret/public.txt* secretlink tmp tmp/x"},
		{"top-level pattern", "src", []string{"*.log", "tmp"},
			". a.txt deep deep/er deep/er/e.log envlink keep keep/c.txt keep/d.log secret/public.txt* secretlink"},
		{"** reaches every depth", "src", []string{"**/*.log"},
			". a.txt deep deep/er envlink keep keep/c.txt secret/public.txt* secretlink tmp tmp/x"},
		{"pattern from the root", "src", []string{"src/keep"},
			". a.txt b.log deep deep/er deep/er/e.log envlink secret/public.txt* secretlink tmp tmp/x"},
		{"re-include in excludes", "src", []string{"keep", "!keep/c.txt"},
			". a.txt b.log deep deep/er deep/er/e.log envlink keep/c.txt* secret/public.txt* secretlink tmp tmp/x"},
		{"a file item", "src/a.txt", nil, "."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Join(walk(t, r, tc.pattern, tc.excludes), " ")
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// Entries reached by name from their open directory and by Rel from the
// root are the same file.
func TestWalkEntryHandles(t *testing.T) {
	dir := tree(t, "d/e/f=content")
	r := openRoot(t, dir, nil)
	items, err := r.Items([]string{"d"}, false)
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	err = r.Walk(context.Background(), &items[0], nil, Visitor{Visit: func(e *Entry) error {
		if e.Info.Mode().IsRegular() {
			a, err := e.Dir.ReadFile(e.Name)
			if err != nil {
				return err
			}
			b, err := r.FS.ReadFile(e.Rel)
			if err != nil || string(a) != string(b) {
				t.Errorf("%s: %q vs %q (%v)", e.Rel, a, b, err)
			}
		}
		seen = append(seen, e.Rel)
		return nil
	}})
	if err != nil || !slices.Equal(seen, []string{"d", "d/e", "d/e/f"}) {
		t.Fatalf("seen %q, %v", seen, err)
	}
}

// FuzzPatterns: .dockerignore and --exclude patterns never panic, never
// hide the root, and (without "!" patterns) hide everything below a
// hidden directory, as the walker assumes when it skips one.
func FuzzPatterns(f *testing.F) {
	f.Add("**/*.log", "a/b/c.log")
	f.Add("secret\n!secret/public.txt", "secret/public.txt")
	f.Add("*/tmp*", "x/tmpfile/y")
	f.Add("[a-", "a")
	f.Fuzz(func(t *testing.T, patterns, rel string) {
		pats := strings.Split(patterns, "\n")
		if len(pats) > 20 || len(rel) > 200 {
			return
		}
		rel = strings.TrimPrefix(filepath.Clean("/"+rel), "/")
		x, err := NewExcludes(pats)
		pm, perr := patternmatcher.New(pats)
		if err != nil || perr != nil {
			return // refused patterns are the user's error
		}
		ign := &ignore{pm}
		r := &Root{Ignore: ign}
		if r.Ignored(".") || r.Ignored("") {
			t.Fatal("the root is hidden")
		}
		if rel == "" || strings.ContainsRune(rel, 0) {
			return
		}
		if !pm.Exclusions() && r.Ignored(rel) && !r.Ignored(rel+"/below") {
			t.Fatalf("%q hides %q but not %q", patterns, rel, rel+"/below")
		}
		if x != nil && !x.hasExclusions() && x.match(rel, rel) && !x.match(rel+"/below", rel+"/below") {
			t.Fatalf("--exclude %q excludes %q but not what is below it", patterns, rel)
		}
	})
}
