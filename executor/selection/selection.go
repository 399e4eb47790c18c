// Package selection decides what a step reads from a source root (the
// build context, a stage, an image): which paths its source patterns match,
// which entries below them it sees after .dockerignore and --exclude, and
// where symlinks lead. COPY/ADD, the step cache key and RUN's context bind
// mounts all walk through it, so the key covers exactly what the step
// reads and an ignored path does not exist for any of them, through any
// symlink.
package selection

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"

	"github.com/moby/patternmatcher"
)

// Matcher is a .dockerignore matcher (dockerfile.Ignore).
type Matcher interface {
	// Matches reports whether rel (relative to the root) is ignored,
	// directly or through an ignored parent no "!" pattern re-includes.
	Matches(rel string) (bool, error)
	// HasExclusions reports "!" patterns: an ignored directory may then
	// hold re-included paths, so walkers descend into it.
	HasExclusions() bool
}

// Root is a source root and the rules that hide parts of it.
type Root struct {
	FS     *os.Root
	Ignore Matcher // nil: nothing ignored (stages and images)
	What   string  // for messages: "build context", "stage 1", ...
}

// ErrNotFound is wrapped by errors for sources that do not exist, or that
// exist only as ignored paths.
var ErrNotFound = errors.New("file not found")

// maxLinks bounds the symlinks followed while resolving one path, as the
// kernel's ELOOP does.
const maxLinks = 40

// Ignored reports whether rel is hidden by .dockerignore.
func (r *Root) Ignored(rel string) bool {
	if r.Ignore == nil || rel == "." || rel == "" {
		return false
	}
	ok, err := r.Ignore.Matches(rel)
	return err == nil && ok
}

// Resolve follows the symlinks of rel inside the root: an absolute target
// starts again at the root and ".." never leaves it, as BuildKit resolves
// a COPY source. It returns the path with no symlink left in it, and fails
// (wrapping ErrNotFound) if any path it passes through is ignored, so a
// symlink never brings an ignored file or directory back.
func (r *Root) Resolve(rel string) (string, error) {
	todo := splitPath(rel)
	var done []string
	links := 0
	for len(todo) > 0 {
		el := todo[0]
		todo = todo[1:]
		switch el {
		case ".", "":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		cur := path.Join(append(slices.Clone(done), el)...)
		fi, err := r.FS.Lstat(cur)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				return "", fmt.Errorf("%s: %w: %s", r.What, ErrNotFound, displayRel(rel, cur))
			}
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = append(done, el)
			continue
		}
		// An ignored link does not exist, whatever it points at.
		if r.Ignored(cur) {
			return "", r.ignoredErr(rel, cur)
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("%s: %s: too many levels of symbolic links", r.What, rel)
		}
		target, err := r.FS.Readlink(cur)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			done = nil
		}
		todo = append(splitPath(target), todo...)
	}
	if len(done) == 0 {
		return ".", nil
	}
	real := path.Join(done...)
	// What the path leads to is checked, not the names on the way: a
	// re-included "a/keep" below an ignored "a" exists, an ignored target
	// reached through a link does not.
	if r.Ignored(real) {
		return "", r.ignoredErr(rel, real)
	}
	return real, nil
}

func (r *Root) ignoredErr(asked, at string) error {
	return fmt.Errorf("%s: %w (excluded by .dockerignore): %s", r.What, ErrNotFound, displayRel(asked, at))
}

func displayRel(asked, at string) string {
	if asked == at {
		return asked
	}
	return asked + " (at " + at + ")"
}

func splitPath(p string) []string { return strings.Split(p, "/") }

// Item is one matched source of a step.
type Item struct {
	Rel  string // as matched, cleaned, relative to the root ("." for the root)
	Real string // Rel with its symlinks resolved inside the root
	Keep string // --parents: the relative path kept under the destination
	Info fs.FileInfo
}

// Items matches source patterns (globs allowed) as COPY does: each
// pattern must match something; with parents, "a/./b" keeps "b" under the
// destination. Matches are sorted within each pattern; ignored paths never
// match.
func (r *Root) Items(patterns []string, parents bool) ([]Item, error) {
	var out []Item
	for _, p := range patterns {
		items, err := r.expand(p, parents)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
	}
	return out, nil
}

func (r *Root) expand(p string, parents bool) ([]Item, error) {
	keepFrom := ""
	if parents {
		// "a/./b/c" keeps "b/c" under the destination; otherwise the whole path.
		if i := strings.Index(p, "/./"); i >= 0 {
			keepFrom = path.Clean(p[:i])
		}
	}
	clean := strings.TrimPrefix(path.Clean("/"+p), "/")
	if clean == "" {
		clean = "."
	}
	rels := []string{clean}
	if HasMeta(clean) {
		var err error
		if rels, err = r.glob(clean); err != nil {
			return nil, err
		}
		// A wildcard may match nothing, as BuildKit allows: the other
		// sources still copy.
	}
	out := make([]Item, 0, len(rels))
	for _, rel := range rels {
		real, err := r.Resolve(rel)
		if err != nil {
			return nil, err
		}
		fi, err := r.FS.Lstat(real)
		if err != nil {
			return nil, err
		}
		it := Item{Rel: rel, Real: real, Info: fi}
		if parents {
			it.Keep = rel
			if keepFrom != "" && keepFrom != "." {
				it.Keep = strings.TrimPrefix(strings.TrimPrefix(rel, keepFrom), "/")
			}
		}
		out = append(out, it)
	}
	return out, nil
}

// Item is the literal path rel (no globbing) as an item: a RUN bind
// mount's source.
func (r *Root) Item(rel string) (Item, error) {
	clean := strings.TrimPrefix(path.Clean("/"+rel), "/")
	if clean == "" {
		clean = "."
	}
	real, err := r.Resolve(clean)
	if err != nil {
		return Item{}, err
	}
	fi, err := r.FS.Lstat(real)
	if err != nil {
		return Item{}, err
	}
	return Item{Rel: clean, Real: real, Info: fi}, nil
}

// HasMeta reports glob characters.
func HasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// glob expands a pattern one path element at a time, in sorted order.
func (r *Root) glob(pattern string) ([]string, error) {
	cands := []string{"."}
	for _, el := range strings.Split(pattern, "/") {
		var next []string
		for _, c := range cands {
			if !HasMeta(el) {
				p := path.Join(c, el)
				if _, err := r.FS.Lstat(p); err == nil && !r.Ignored(p) {
					next = append(next, p)
				}
				continue
			}
			if _, err := path.Match(el, ""); err != nil {
				return nil, fmt.Errorf("bad pattern %q: %w", pattern, err)
			}
			names, err := r.readDir(c)
			if err != nil {
				continue
			}
			for _, n := range names {
				if ok, _ := path.Match(el, n); ok {
					if p := path.Join(c, n); !r.Ignored(p) {
						next = append(next, p)
					}
				}
			}
		}
		cands = next
	}
	return cands, nil
}

func (r *Root) readDir(rel string) ([]string, error) {
	real, err := r.Resolve(rel)
	if err != nil {
		return nil, err
	}
	f, err := r.FS.Open(real)
	if err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	slices.Sort(names)
	return names, err
}

// Excludes are a step's --exclude patterns, matched (as .dockerignore
// patterns, ** included) against each entry's path below its item and
// from the root.
type Excludes struct {
	pm *patternmatcher.PatternMatcher
}

// NewExcludes compiles --exclude patterns; none gives a nil matcher.
func NewExcludes(patterns []string) (*Excludes, error) {
	if len(patterns) == 0 {
		return nil, nil
	}
	clean := make([]string, len(patterns))
	for i, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(path.Clean("/"+strings.TrimPrefix(p, "!")), "/")
		if neg {
			p = "!" + p
		}
		clean[i] = p
	}
	pm, err := patternmatcher.New(clean)
	if err != nil {
		return nil, fmt.Errorf("--exclude: %w", err)
	}
	return &Excludes{pm: pm}, nil
}

func (x *Excludes) match(sub, rel string) bool {
	if x == nil {
		return false
	}
	for _, p := range []string{sub, rel} {
		if ok, err := x.pm.MatchesOrParentMatches(p); err == nil && ok {
			return true
		}
	}
	return false
}

func (x *Excludes) hasExclusions() bool { return x != nil && x.pm.Exclusions() }

// Entry is one path a walk visits.
type Entry struct {
	Item   *Item
	Parent *Entry // the directory entry it is in; nil for an item's root
	// Rel is the entry's path from the root (below the item's Real path);
	// Sub its path below the item ("" for the item's root).
	Rel, Sub string
	// Dir and Name reach the entry: Dir is an open handle of its
	// directory (the root itself, with Name = Rel, for an item's root).
	// Valid only during the visit.
	Dir  *os.Root
	Name string
	Info fs.FileInfo // lstat (an item's root: its resolved target's)
	// Implied marks an entry found inside an ignored or excluded directory
	// because a "!" pattern re-includes it: that directory was not
	// visited, so whoever recreates the entry creates its parents.
	Implied bool
	// State is the visitor's: what it keeps for a directory (an open
	// destination, a target path) for the entries inside it.
	State any
}

// Visitor receives a walk's entries in order: an item's root first, then,
// for a directory, its entries in name order, each directory before what
// it holds. Leave, when set, is called after a directory's entries.
type Visitor struct {
	Visit func(*Entry) error
	Leave func(*Entry)
}

// Walk visits it and, if it is a directory, everything selected below it:
// entries ignored by .dockerignore or matched by excludes are skipped with
// everything under them, unless "!" patterns re-include parts of them.
// Symlinks below the item are entries, never followed.
func (r *Root) Walk(ctx context.Context, it *Item, excludes *Excludes, v Visitor) error {
	root := &Entry{Item: it, Rel: it.Real, Dir: r.FS, Name: it.Real, Info: it.Info}
	if err := v.Visit(root); err != nil {
		return err
	}
	if !it.Info.IsDir() {
		return nil
	}
	d, err := r.FS.OpenRoot(it.Real)
	if err != nil {
		return err
	}
	defer d.Close()
	err = r.walkDir(ctx, d, root, excludes, v, false)
	if v.Leave != nil {
		v.Leave(root)
	}
	return err
}

// walkDir visits dir's entries; implied: dir itself is ignored or
// excluded, and only re-included entries are visited.
func (r *Root) walkDir(ctx context.Context, dir *os.Root, parent *Entry, x *Excludes, v Visitor, implied bool) error {
	f, err := dir.Open(".")
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("read %s: %w", parent.Rel, err)
	}
	slices.Sort(names)
	descendHidden := (r.Ignore != nil && r.Ignore.HasExclusions()) || x.hasExclusions()
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		e := &Entry{Item: parent.Item, Parent: parent, Rel: path.Join(parent.Rel, n), Sub: path.Join(parent.Sub, n),
			Dir: dir, Name: n, Implied: implied}
		fi, err := dir.Lstat(n)
		if err != nil {
			if implied {
				continue
			}
			return err
		}
		e.Info = fi
		if r.Ignored(e.Rel) || x.match(e.Sub, e.Rel) {
			// An ignored directory may still hold re-included paths.
			if fi.IsDir() && descendHidden {
				if err := r.descend(ctx, dir, e, x, v, true); err != nil {
					return err
				}
			}
			continue
		}
		if err := v.Visit(e); err != nil {
			return err
		}
		if fi.IsDir() {
			if err := r.descend(ctx, dir, e, x, v, false); err != nil {
				return err
			}
			if v.Leave != nil {
				v.Leave(e)
			}
		}
	}
	return nil
}

func (r *Root) descend(ctx context.Context, dir *os.Root, e *Entry, x *Excludes, v Visitor, implied bool) error {
	sub, err := dir.OpenRoot(e.Name)
	if err != nil {
		if implied {
			return nil
		}
		return err
	}
	defer sub.Close()
	return r.walkDir(ctx, sub, e, x, v, implied)
}
