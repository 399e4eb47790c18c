package dockerfile

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// argList is an ordered set of ARG values. Order is the order of first
// declaration so that Exec.Env is deterministic; a redeclaration updates the
// value in place.
type argList struct {
	keys []string
	vals map[string]string
	size int // bytes of names and values, against MaxArgsSize
}

func newArgList() *argList { return &argList{vals: map[string]string{}} }

func (a *argList) set(k, v string) error {
	old, ok := a.vals[k]
	if !ok {
		a.keys = append(a.keys, k)
		a.size += len(k)
	}
	a.size += len(v) - len(old)
	a.vals[k] = v
	if a.size > MaxArgsSize {
		return fmt.Errorf("the ARG values in effect would exceed %s: %w", mib(MaxArgsSize), ErrTooLarge)
	}
	return nil
}

func (a *argList) get(k string) (string, bool) {
	v, ok := a.vals[k]
	return v, ok
}

func (a *argList) clone() *argList {
	c := &argList{keys: slices.Clone(a.keys), vals: maps.Clone(a.vals), size: a.size}
	return c
}

// Get and Keys make an argList a shell.EnvGetter (FROM lines see only the
// global args).
func (a *argList) Get(k string) (string, bool) { return a.get(k) }
func (a *argList) Keys() []string              { return slices.Clone(a.keys) }

// scope is what a Dockerfile word sees inside a stage: the config Env plus
// the ARGs in effect. ENV wins over an ARG of the same name, as in Docker
// ("Environment variables defined using ENV always override an ARG").
type scope struct {
	env  []string
	args *argList
}

func (s scope) Get(k string) (string, bool) {
	if v, ok := envGet(s.env, k); ok {
		return v, true
	}
	return s.args.get(k)
}

func (s scope) Keys() []string {
	seen := map[string]bool{}
	var keys []string
	for _, kv := range s.env {
		k, _, _ := strings.Cut(kv, "=")
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, k := range s.args.keys {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// environ is the process environment of a RUN: the config Env followed by
// the ARGs in effect that no ENV shadows.
func (s scope) environ() []string {
	out := slices.Clone(s.env)
	for _, k := range s.args.keys {
		if _, ok := envGet(s.env, k); ok {
			continue
		}
		out = append(out, k+"="+s.args.vals[k])
	}
	return out
}

// envGet looks a key up in a "K=V" list; the last entry wins, as in a
// process environment built by appending.
func envGet(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := envValue(env[i], key); ok {
			return v, true
		}
	}
	return "", false
}

// envValue is kv's value if its key is key. Keys compare as
// shell.EqualEnvKeys does on Linux, byte for byte; this runs for every
// entry of the environment at every ENV, so it allocates nothing.
func envValue(kv, key string) (string, bool) {
	if len(kv) > len(key) && kv[len(key)] == '=' && kv[:len(key)] == key {
		return kv[len(key)+1:], true
	}
	return "", false
}

// envSet replaces the first entry for key or appends one (BuildKit's addEnv),
// keeping the position of an existing variable stable.
func envSet(env []string, key, val string) []string {
	for i, kv := range env {
		if _, ok := envValue(kv, key); ok {
			env[i] = key + "=" + val
			return env
		}
	}
	return append(env, key+"="+val)
}

// expandWith expands one word with the file's escape token. A Lex is not
// safe for concurrent use, so each caller owns one.
func expandWith(lex *shell.Lex, word string, env shell.EnvGetter) (string, error) {
	if err := checkExpansion(word, env); err != nil {
		return "", err
	}
	out, _, err := lex.ProcessWord(word, env)
	if err == nil && len(out) > MaxWordSize {
		return "", fmt.Errorf("expanding %s makes a word over the %s limit: %w", clip(word), mib(MaxWordSize), ErrTooLarge)
	}
	return out, err
}

// rawLexer expands heredoc bodies (<<EOF, not <<'EOF'): quotes are literal
// text there, and BuildKit always uses the backslash escape for them.
func rawLexer() *shell.Lex {
	lex := shell.NewLex('\\')
	lex.SkipProcessQuotes = true
	return lex
}
