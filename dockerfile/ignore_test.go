package dockerfile

import (
	"strings"
	"sync"
	"testing"
)

func TestReadIgnore(t *testing.T) {
	in := "\ufeff# comment\n\n  node_modules  \n/abs/path\n!keep.md\n./dir/../other\n"
	got, err := ReadIgnore(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"node_modules", "abs/path", "!keep.md", "other"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("ReadIgnore = %q, want %q", got, want)
	}
}

func TestIgnoreMatches(t *testing.T) {
	// Each row: patterns (comma-separated), path, excluded?
	tests := []struct {
		patterns string
		path     string
		want     bool
	}{
		{"*.md", "README.md", true},
		{"*.md", "docs/README.md", false}, // * does not cross directories
		{"**/*.md", "docs/README.md", true},
		{"node_modules", "node_modules/x/y.js", true}, // parent excluded
		{"node_modules", "src/node_modules", false},
		{"*.md,!README.md", "README.md", false},
		{"*.md,!README.md", "CHANGES.md", true},
		{"docs,!docs/keep.txt", "docs/keep.txt", false},
		{"docs,!docs/keep.txt", "docs/drop.txt", true},
		{"build/", "build/out.bin", true},
		{"a/b", "./a/b/c", true},
		{"*", ".", false}, // the context root is never excluded
		{"*", "", false},
		{"", "anything", false},
	}
	for _, tt := range tests {
		var pats []string
		if tt.patterns != "" {
			pats = strings.Split(tt.patterns, ",")
		}
		m, err := NewIgnore(pats)
		if err != nil {
			t.Fatalf("%q: %v", tt.patterns, err)
		}
		got, err := m.Matches(tt.path)
		if err != nil {
			t.Fatalf("%q %q: %v", tt.patterns, tt.path, err)
		}
		if got != tt.want {
			t.Errorf("patterns %q, path %q: excluded = %v, want %v", tt.patterns, tt.path, got, tt.want)
		}
	}
}

func TestIgnoreHasExclusions(t *testing.T) {
	for _, tt := range []struct {
		patterns []string
		want     bool
	}{
		{nil, false},
		{[]string{"a", "b"}, false},
		{[]string{"a", "!a/b"}, true},
	} {
		m, err := NewIgnore(tt.patterns)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.HasExclusions(); got != tt.want {
			t.Errorf("%q: HasExclusions = %v, want %v", tt.patterns, got, tt.want)
		}
	}
	var nilIgnore *Ignore
	if ok, err := nilIgnore.Matches("x"); ok || err != nil || nilIgnore.HasExclusions() {
		t.Error("a nil *Ignore must match nothing")
	}
}

func TestIgnoreErrors(t *testing.T) {
	if _, err := NewIgnore([]string{"!"}); err == nil {
		t.Error(`NewIgnore("!") should fail`)
	}
	if _, err := NewIgnore([]string{"a[b"}); err == nil {
		t.Error(`NewIgnore("a[b") should fail`)
	}
}

func TestIgnoreConcurrent(t *testing.T) {
	m, err := NewIgnore([]string{"**/*.tmp", "!keep/*.tmp", "vendor"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				p := []string{"a/b.tmp", "keep/x.tmp", "vendor/y", "src/z.go"}[(i+j)%4]
				if _, err := m.Matches(p); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
