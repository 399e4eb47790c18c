package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/builder-dev/builder/dockerfile"
	"github.com/builder-dev/builder/executor/sandbox"
	"github.com/builder-dev/builder/internal/lineout"
	"github.com/builder-dev/builder/platform"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// runExec runs one RUN in the sandbox over a writable snapshot and commits
// the changes as a layer.
func (e *Executor) runExec(ctx context.Context, s *stageState, x *dockerfile.Exec, done map[int]*stageState, prefix string) error {
	if e.cfg.Runner == nil {
		return errors.New("RUN needs a sandbox, and none is configured")
	}
	if err := e.canRun(s.platform); err != nil {
		return err
	}
	m, err := e.prepare(ctx, s)
	if err != nil {
		return err
	}
	defer m.Release()
	rootfs, err := os.OpenRoot(m.Root())
	if err != nil {
		return err
	}
	u, err := resolveUser(rootfs, x.User)
	if err != nil {
		rootfs.Close()
		return fmt.Errorf("USER %s: %w", x.User, err)
	}
	env := append(append([]string(nil), x.Env...), x.Proxy...)
	if !hasKey(env, "HOME") {
		env = append(env, "HOME="+u.home)
	}
	// Docker creates a missing working directory for RUN; so do we (it
	// then belongs to the layer, as it does there).
	cwd := x.Dir
	if cwd == "" {
		cwd = "/"
	}
	if rel := strings.TrimPrefix(path.Clean(cwd), "/"); rel != "" {
		if _, err := rootfs.Stat(rel); errors.Is(err, os.ErrNotExist) {
			if err := rootfs.MkdirAll(rel, 0o755); err != nil {
				rootfs.Close()
				return fmt.Errorf("create working directory %s: %w", cwd, err)
			}
		}
	}
	rootfs.Close()

	mounts, secretEnv, cleanup, err := e.runMounts(ctx, x, done, u)
	defer cleanup()
	if err != nil {
		return err
	}
	env = append(env, secretEnv...)
	network, err := e.runNetwork(x)
	if err != nil {
		return err
	}
	privileged := x.Security == "insecure"
	if privileged && !e.cfg.AllowInsecure {
		return &dockerfile.Error{Pos: x.At, Err: errors.New("RUN --security=insecure needs --allow security.insecure: a Dockerfile alone may not give a step every privilege")}
	}
	spec, err := e.cfg.Runner.Spec(sandbox.SpecOptions{
		Rootfs: m.Root(), Args: x.Args, Env: env, Cwd: cwd,
		UID: uint32(u.UID), GID: uint32(u.GID), AdditionalGids: u.groups,
		Network: network, Mounts: mounts, Privileged: privileged,
	})
	if err != nil {
		return err
	}
	out := &prefixWriter{w: e.cfg.Out, prefix: prefix}
	e.hand.run(1) // its lookups and mount are done
	err = e.cfg.Runner.Run(ctx, spec, nil, out, out)
	e.hand.run(-1)
	out.Flush()
	if err != nil && e.quiet && e.cfg.ErrOut != nil {
		// --quiet hides RUN output; a failing RUN still shows its last lines.
		e.cfg.ErrOut.Write(out.tail)
	}
	if err != nil {
		var ee *sandbox.ExitError
		var se *sandbox.StartError
		if errors.As(err, &ee) && e.cfg.RunFailureNote != "" {
			return &dockerfile.Error{Pos: x.At, Err: fmt.Errorf("%s: %w (%s)", x.Text, err, e.cfg.RunFailureNote)}
		}
		if errors.As(err, &ee) || errors.As(err, &se) {
			return &dockerfile.Error{Pos: x.At, Err: fmt.Errorf("%s: %w", x.Text, err)}
		}
		return err
	}
	return e.commitMount(ctx, s, m, x.String())
}

// canRun checks once per platform that RUN steps for p can run here:
// linux, natively or through a registered emulator.
func (e *Executor) canRun(p platform.Platform) error {
	if p.IsZero() {
		return nil
	}
	if p.OS != "linux" {
		return fmt.Errorf("cannot run for %s: builder runs RUN steps for linux only", p)
	}
	e.mu.Lock()
	err, ok := e.emulation[p]
	e.mu.Unlock()
	if ok {
		return err
	}
	err = sandbox.CheckEmulation(e.cfg.BinfmtDir, p)
	var uv *sandbox.UnverifiableError
	if errors.As(err, &uv) {
		err = nil // said before the build; the RUN's own error will tell
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.emulation == nil {
		e.emulation = map[platform.Platform]error{}
	}
	e.emulation[p] = err
	return err
}

// runNetwork is the network a RUN gets: its own --network if the user
// allows it, else the build's.
func (e *Executor) runNetwork(x *dockerfile.Exec) (string, error) {
	switch x.Network {
	case "", "default":
		return e.cfg.Network, nil
	case "host":
		if !e.cfg.AllowNetworkHost {
			return "", &dockerfile.Error{Pos: x.At, Err: errors.New("RUN --network=host needs --allow network.host: a Dockerfile alone may not reach the host's network")}
		}
		return sandbox.NetworkHost, nil
	case "none":
		return sandbox.NetworkNone, nil
	}
	return "", &dockerfile.Error{Pos: x.At, Err: fmt.Errorf("RUN --network=%s: unknown network (want default, none or host)", x.Network)}
}

func hasKey(env []string, k string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, k+"=") {
			return true
		}
	}
	return false
}

// runMounts turns RUN --mount entries (and heredoc scripts) into sandbox
// mounts with host sources. cleanup releases views, locks and temp files.
func (e *Executor) runMounts(ctx context.Context, x *dockerfile.Exec, done map[int]*stageState, u userInfo) ([]specs.Mount, []string, func(), error) {
	var mounts []specs.Mount
	var env []string
	var undo []func()
	cleanup := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	tmp, err := e.tempDir("run-")
	if err != nil {
		return nil, nil, cleanup, err
	}
	undo = append(undo, func() { os.RemoveAll(tmp) })

	for i, f := range x.Files {
		// A heredoc script with a shebang is executed from /dev/pipes.
		p := filepath.Join(tmp, fmt.Sprintf("heredoc-%d", i))
		if err := os.WriteFile(p, []byte(f.Data), 0o755); err != nil {
			return nil, nil, cleanup, err
		}
		os.Chmod(p, 0o755)
		mounts = append(mounts, specs.Mount{Destination: "/dev/pipes/" + f.Name, Type: "bind", Source: p,
			Options: []string{"bind", "ro"}})
	}
	for _, mnt := range x.Mounts {
		if mnt.Type == "secret" && mnt.Env != "" {
			v, ok, err := e.secretValue(mnt)
			if err != nil {
				return nil, nil, cleanup, err
			}
			if ok {
				env = append(env, mnt.Env+"="+string(v))
			}
			if mnt.Target == "" {
				continue
			}
		}
		sm, release, err := e.runMount(ctx, mnt, done, tmp, u)
		if release != nil {
			undo = append(undo, release)
		}
		if err != nil {
			return nil, nil, cleanup, fmt.Errorf("--mount type=%s,target=%s: %w", mnt.Type, mnt.Target, err)
		}
		if sm != nil {
			mounts = append(mounts, *sm)
			if mnt.Type == "ssh" && !hasKey(env, "SSH_AUTH_SOCK") && !hasKey(x.Env, "SSH_AUTH_SOCK") {
				env = append(env, "SSH_AUTH_SOCK="+mnt.Target) // the first agent, as BuildKit does
			}
		}
	}
	return mounts, env, cleanup, nil
}

// prefixWriter prefixes every line of a RUN's output with its step tag
// (lineout, whole lines) and keeps the last of them for a failure's message.
type prefixWriter struct {
	w      io.Writer
	prefix string
	once   sync.Once
	lw     *lineout.Writer
	tail   []byte // the last tailMax bytes written, prefixed
}

const tailMax = 16 << 10

func (p *prefixWriter) lines() *lineout.Writer {
	p.once.Do(func() {
		p.lw = &lineout.Writer{W: p.w, Prefix: p.prefix, Line: func(l []byte) {
			p.tail = append(p.tail, l...)
			if len(p.tail) > tailMax {
				p.tail = append([]byte(nil), p.tail[len(p.tail)-tailMax:]...)
			}
		}}
	})
	return p.lw
}

// Write never fails: a RUN is not stopped because its output cannot be shown.
func (p *prefixWriter) Write(b []byte) (int, error) {
	p.lines().Write(b)
	return len(b), nil
}

// Flush writes a last line without its newline.
func (p *prefixWriter) Flush() { p.lines().Flush() }
