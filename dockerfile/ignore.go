package dockerfile

import (
	"fmt"
	"io"
	"path"
	"strings"
	"sync"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// ReadIgnore reads .dockerignore patterns: comments and blank lines are
// dropped, patterns are cleaned and made relative to the context root.
func ReadIgnore(r io.Reader) ([]string, error) {
	pats, err := ignorefile.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading .dockerignore: %w", err)
	}
	return pats, nil
}

// Ignore matches context paths against .dockerignore patterns. It is safe
// for concurrent use (the underlying matcher compiles lazily and is not).
type Ignore struct {
	mu sync.Mutex
	pm *patternmatcher.PatternMatcher
}

// NewIgnore compiles patterns as returned by ReadIgnore.
func NewIgnore(patterns []string) (*Ignore, error) {
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf("invalid .dockerignore pattern: %w", err)
	}
	return &Ignore{pm: pm}, nil
}

// Matches reports whether rel (slash-separated, relative to the context
// root) is excluded, either directly or through an excluded parent that no
// later "!" pattern re-includes. The root itself is never excluded.
func (m *Ignore) Matches(rel string) (bool, error) {
	if m == nil {
		return false, nil
	}
	rel = path.Clean("/" + strings.TrimPrefix(rel, "./"))[1:]
	if rel == "" {
		return false, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pm.MatchesOrParentMatches(rel)
}

// HasExclusions reports a "!" pattern: a walker then cannot skip an excluded
// directory wholesale, because something inside may be re-included.
func (m *Ignore) HasExclusions() bool {
	return m != nil && m.pm.Exclusions()
}
