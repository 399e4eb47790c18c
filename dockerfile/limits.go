package dockerfile

// Limits on what a Dockerfile may make builder hold. A Dockerfile is
// hostile input: a few lines can double a value at each step ("billion
// laughs") or pile up thousands of instructions. Each limit names the line
// that crosses it; within them a build stays far below 256 MiB.

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

const (
	// MaxDockerfileSize bounds the Dockerfile itself: real ones are far smaller, and a
	// megabyte of one-word lines already makes the parser hold about 140 MiB.
	MaxDockerfileSize = 1 << 20
	// MaxWordSize bounds any single expanded word or value (an ARG or ENV
	// value, a LABEL, a path, a RUN command line).
	MaxWordSize = 1 << 20
	// MaxConfigSize bounds the image config a stage makes (environment,
	// labels, ports, volumes, history...): 4 MiB is the most containers/image
	// (podman, buildah, skopeo) reads of a config blob.
	MaxConfigSize = 4 << 20
	// MaxArgsSize bounds the ARG values in effect in a stage (they reach every
	// RUN's environment).
	MaxArgsSize = 4 << 20
	// MaxStepData bounds what all the steps of a stage hold together (each
	// RUN carries its whole environment and command line).
	MaxStepData = 64 << 20
)

// ErrTooLarge is wrapped by every limit error.
var ErrTooLarge = errors.New("too large")

// historyOverhead approximates what a history entry adds to a config
// besides its text (created time, keys, punctuation).
const historyOverhead = 96

// budget keeps a stage's running sizes against the limits.
type budget struct {
	env, labels, sets int // config: Env, Labels, ExposedPorts+Volumes+OnBuild
	scalars           map[string]int
	history           int
	steps             int
}

func newBudget(c *BaseConfig) *budget {
	b := &budget{scalars: map[string]int{}}
	for _, kv := range c.Env {
		b.env += len(kv)
	}
	for k, v := range c.Labels {
		b.labels += len(k) + len(v) + 1
	}
	for k := range c.ExposedPorts {
		b.sets += len(k)
	}
	for k := range c.Volumes {
		b.sets += len(k)
	}
	for _, t := range c.OnBuild {
		b.sets += len(t)
	}
	b.scalar("cmd", c.Cmd...)
	b.scalar("entrypoint", c.Entrypoint...)
	b.scalar("shell", c.Shell...)
	b.scalar("user", c.User)
	b.scalar("workdir", c.WorkingDir)
	b.scalar("stopsignal", c.StopSignal)
	if c.Healthcheck != nil {
		b.scalar("healthcheck", c.Healthcheck.Test...)
	}
	return b
}

// scalar records the size of a config field that an instruction replaces.
func (b *budget) scalar(name string, vals ...string) {
	n := 0
	for _, v := range vals {
		n += len(v) + 3
	}
	b.scalars[name] = n
}

func (b *budget) config() int {
	n := b.env + b.labels + b.sets + b.history
	for _, v := range b.scalars {
		n += v
	}
	return n
}

// add accounts for a step and checks every limit.
func (b *budget) add(s Step) error {
	switch s := s.(type) {
	case *Meta:
		if !s.NoHistory {
			b.history += len(s.Text) + historyOverhead
		}
		b.steps += len(s.Text)
	case *Exec:
		b.history += len(s.Text) + historyOverhead
		b.steps += len(s.Text) + sizeOf(s.Args) + sizeOf(s.Env) + sizeOf(s.Proxy)
		for _, f := range s.Files {
			b.steps += len(f.Data)
		}
	case *Copy:
		b.history += len(s.Text) + historyOverhead
		b.steps += len(s.Text) + sizeOf(s.Srcs)
		for _, h := range s.Inline {
			b.steps += len(h.Data)
		}
	}
	if n := b.config(); n > MaxConfigSize {
		return fmt.Errorf("the image config would be %s, over the %s containers/image reads (environment, labels and history of this stage): %w",
			mib(n), mib(MaxConfigSize), ErrTooLarge)
	}
	if b.steps > MaxStepData {
		return fmt.Errorf("the steps of this stage would hold over %s of commands and environment: %w", mib(MaxStepData), ErrTooLarge)
	}
	return nil
}

func sizeOf(ss []string) int {
	n := 0
	for _, s := range ss {
		n += len(s) + 1
	}
	return n
}

func mib(n int) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// checkExpansion bounds the expansion of word in env before it is made:
// every variable it references counts with its whole value (more than
// once when a ${var/pattern/replacement} may repeat the replacement), so
// a word that doubles a value at each step is refused at the step where
// it would cross MaxWordSize, having allocated nothing big.
func checkExpansion(word string, env interface{ Get(string) (string, bool) }) error {
	if len(word) > MaxWordSize {
		return fmt.Errorf("a word of %s, over the %s limit: %w", mib(len(word)), mib(MaxWordSize), ErrTooLarge)
	}
	if !strings.Contains(word, "$") {
		return nil
	}
	bound := len(word)
	for i := 0; i < len(word); i++ {
		if word[i] != '$' || i+1 == len(word) {
			continue
		}
		j := i + 1
		braced := word[j] == '{'
		if braced {
			j++
		}
		k := j
		for k < len(word) && (word[k] == '_' || unicode.IsLetter(rune(word[k])) || unicode.IsDigit(rune(word[k]))) {
			k++
		}
		if k == j {
			continue
		}
		v, _ := env.Get(word[j:k])
		times := 1
		if braced && k < len(word) && word[k] == '/' {
			times = 1 + len(word) // every character may be replaced by the whole replacement
		}
		bound += len(v) * times
		if bound > MaxWordSize {
			return fmt.Errorf("expanding %s would make a word over the %s limit: %w", clip(word), mib(MaxWordSize), ErrTooLarge)
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%q...", s[:40])
	}
	return fmt.Sprintf("%q", s)
}
