package executor

// ADD of a git repository, as BuildKit has it: URL#REF[:SUBDIR] with
// https://HOST/REPO.git, git@HOST:REPO.git, git:// and ssh:// URLs. The
// ref is resolved to a commit first (git ls-remote): the commit is the
// step's cache input and goes into its history, so a moved branch is a
// miss and a rebuild at the same commit a hit. The checkout runs the git
// binary with only network transports allowed, no hooks, no submodules
// and no prompts; .git is dropped unless --keep-git-dir.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"regexp"
	"strings"

	"github.com/builder-dev/builder/dockerfile"
)

// gitRef is a parsed git source.
type gitRef struct {
	url    string // without the fragment
	ref    string // branch, tag or commit; "" is the remote's HEAD
	subdir string
}

func parseGitRef(s string) gitRef {
	u, frag, _ := strings.Cut(s, "#")
	ref, sub, _ := strings.Cut(frag, ":")
	return gitRef{url: u, ref: ref, subdir: strings.Trim(path.Clean("/"+sub), "/")}
}

var commitRe = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// gitCmd runs git with the hardening every ADD git source gets.
func gitCmd(ctx context.Context, dir string, args ...string) ([]byte, error) {
	full := append([]string{
		"-c", "protocol.allow=never", "-c", "protocol.https.allow=always", "-c", "protocol.http.allow=always",
		"-c", "protocol.ssh.allow=always", "-c", "protocol.git.allow=always",
		"-c", "core.hooksPath=/dev/null", "-c", "submodule.recurse=false", "-c", "advice.detachedHead=false",
	}, args...)
	cmd := exec.CommandContext(ctx, "git", full...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=/bin/false", "GIT_CONFIG_NOSYSTEM=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, errors.New("ADD of a git repository needs the git binary (Debian: apt-get install git)")
		}
		return nil, fmt.Errorf("git %s: %v: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// gitCommit resolves the source's ref to a commit, once per build.
func (e *Executor) gitCommit(ctx context.Context, src string) (string, error) {
	e.mu.Lock()
	c, ok := e.gitCommits[src]
	e.mu.Unlock()
	if ok {
		return c, nil
	}
	g := parseGitRef(src)
	commit := ""
	if commitRe.MatchString(g.ref) {
		commit = g.ref
	} else {
		ref := g.ref
		if ref == "" {
			ref = "HEAD"
		}
		out, err := gitCmd(ctx, "", "ls-remote", g.url, ref, "refs/tags/"+ref+"^{}")
		if err != nil {
			return "", fmt.Errorf("ADD %s: %w", dockerfile.RedactURL(src), err)
		}
		// A tag's peeled commit (^{}) wins over the tag object itself.
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(line)
			if len(f) != 2 {
				continue
			}
			if commit == "" || strings.HasSuffix(f[1], "^{}") {
				commit = f[0]
			}
		}
		if commit == "" {
			return "", fmt.Errorf("ADD %s: no ref %q in the repository", dockerfile.RedactURL(src), ref)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gitCommits == nil {
		e.gitCommits = map[string]string{}
	}
	e.gitCommits[src] = commit
	return commit, nil
}

// fetchGit checks the source out at its commit into a fresh directory
// under the build's scratch space and returns the directory to copy (the
// subdir, when given).
func (e *Executor) fetchGit(ctx context.Context, src string, keepGitDir bool) (string, func(), error) {
	commit, err := e.gitCommit(ctx, src)
	if err != nil {
		return "", nil, err
	}
	dir, err := e.tempDir("git-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	g := parseGitRef(src)
	fail := func(err error) (string, func(), error) {
		cleanup()
		return "", nil, fmt.Errorf("ADD %s: %w", dockerfile.RedactURL(src), err)
	}
	if _, err := gitCmd(ctx, dir, "init", "-q"); err != nil {
		return fail(err)
	}
	if _, err := gitCmd(ctx, dir, "remote", "add", "origin", g.url); err != nil {
		return fail(err)
	}
	// A shallow fetch of the commit where the server allows it; else the
	// ref, whole (dumb HTTP servers know no shallow fetch).
	if _, err := gitCmd(ctx, dir, "fetch", "-q", "--depth", "1", "--no-tags", "origin", commit); err != nil {
		ref := g.ref
		if ref == "" || commitRe.MatchString(ref) {
			ref = "HEAD"
		}
		if _, err2 := gitCmd(ctx, dir, "fetch", "-q", "--no-tags", "origin", ref); err2 != nil {
			return fail(errors.Join(err, err2))
		}
	}
	if _, err := gitCmd(ctx, dir, "checkout", "-q", commit); err != nil {
		return fail(err)
	}
	if !keepGitDir {
		if err := os.RemoveAll(dir + "/.git"); err != nil {
			return fail(err)
		}
	}
	out := dir
	if g.subdir != "" {
		out = dir + "/" + g.subdir
		if fi, err := os.Stat(out); err != nil || !fi.IsDir() {
			return fail(fmt.Errorf("no directory %s at commit %s", g.subdir, commit))
		}
	}
	return out, cleanup, nil
}
