package dockerfile

import (
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
}

func newArgList() *argList { return &argList{vals: map[string]string{}} }

func (a *argList) set(k, v string) {
	if _, ok := a.vals[k]; !ok {
		a.keys = append(a.keys, k)
	}
	a.vals[k] = v
}

func (a *argList) get(k string) (string, bool) {
	v, ok := a.vals[k]
	return v, ok
}

func (a *argList) clone() *argList {
	c := newArgList()
	for _, k := range a.keys {
		c.set(k, a.vals[k])
	}
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
		k, v, _ := strings.Cut(env[i], "=")
		if shell.EqualEnvKeys(k, key) {
			return v, true
		}
	}
	return "", false
}

// envSet replaces the first entry for key or appends one (BuildKit's addEnv),
// keeping the position of an existing variable stable.
func envSet(env []string, key, val string) []string {
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if shell.EqualEnvKeys(k, key) {
			env[i] = key + "=" + val
			return env
		}
	}
	return append(env, key+"="+val)
}

// expandWith expands one word with the file's escape token. A Lex is not
// safe for concurrent use, so each caller owns one.
func expandWith(lex *shell.Lex, word string, env shell.EnvGetter) (string, error) {
	out, _, err := lex.ProcessWord(word, env)
	return out, err
}

// rawLexer expands heredoc bodies (<<EOF, not <<'EOF'): quotes are literal
// text there, and BuildKit always uses the backslash escape for them.
func rawLexer() *shell.Lex {
	lex := shell.NewLex('\\')
	lex.SkipProcessQuotes = true
	return lex
}
