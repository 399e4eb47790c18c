// Package sandbox runs one Dockerfile RUN, described as an OCI runtime
// spec, in a rootfs: with its own namespaces and pivot_root (the default),
// with only chroot (pods without user namespaces), or through runc/crun.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Sandbox runs RUN steps. One Sandbox may run several specs at once.
type Sandbox struct {
	Isolation Isolation
	Runtime   string // IsolationOCI: path or name of runc or crun ("" tries runc, then crun)
	// StateDir is scratch space for bundles and the per-RUN hosts and
	// resolv.conf, on a disk file system; the caller creates and removes it.
	StateDir string
	Log      *slog.Logger
	// ProcBind, NoHostname and NoMounts carry the Plan's fallbacks (a
	// pod's masked /proc, a refused sethostname, no mount namespace).
	ProcBind, NoHostname, NoMounts bool
	// Missing, with IsolationNone, says why RUN cannot run here.
	Missing string
	// Defaults are the user's settings for every RUN (--add-host, -v, ...).
	Defaults RunDefaults

	warned atomic.Bool // the chroot fallbacks are logged once

	netOnce sync.Once
	net     *sharedNet // the build's private network, made on first use
}

// Close stops what the sandbox keeps for the whole build (the private
// network's namespace holder and slirp4netns).
func (s *Sandbox) Close() error {
	if s.net != nil {
		s.net.stop()
	}
	return nil
}

// ExitError is a RUN whose process did not exit 0.
type ExitError struct {
	Code   int            // exit status; 128+Signal when killed by a signal
	Signal syscall.Signal // the signal that killed it, or 0
}

func (e *ExitError) Error() string {
	if e.Signal != 0 {
		return fmt.Sprintf("killed by signal %d (%v)", int(e.Signal), e.Signal)
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

// StartError is a RUN whose command never started: the sandbox could not
// be set up, the working directory is missing, or exec failed.
type StartError struct {
	Op   string // what failed: "exec", "working directory", "mounting proc on", ...
	Path string
	Code int   // what a shell would report: 127 not found, 126 not executable, 125 otherwise
	Err  error // a syscall.Errno when the kernel said why
}

func (e *StartError) Error() string {
	s := "sandbox: " + e.Op
	if e.Path != "" {
		s += " " + e.Path
	}
	return s + ": " + e.Err.Error()
}

func (e *StartError) Unwrap() error { return e.Err }

func startError(w *wireError) *StartError {
	e := &StartError{Op: w.Op, Path: w.Path, Code: w.Code}
	switch {
	case w.Msg != "":
		e.Err = errors.New(w.Msg)
		if w.Errno != 0 {
			e.Err = fmt.Errorf("%s: %w", w.Msg, syscall.Errno(w.Errno))
			if w.Code == codeNotFound && w.Op == "exec" {
				e.Err = &notFound{syscall.Errno(w.Errno)}
			}
		}
	case w.Errno != 0:
		e.Err = syscall.Errno(w.Errno)
	default:
		e.Err = errors.New("failed")
	}
	return e
}

// notFound keeps errors.Is(err, fs.ErrNotExist) for a PATH miss while
// reading as exec(3) users expect.
type notFound struct{ errno syscall.Errno }

func (e *notFound) Error() string { return "executable file not found in $PATH" }
func (e *notFound) Unwrap() error { return e.errno }

func (s *Sandbox) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Run runs spec.Process in the sandbox and waits for it. stdin may be nil
// (then /dev/null); stdout and stderr receive the output as it comes. A
// non-zero exit is an *ExitError; a command that could not be started is a
// *StartError; when ctx ends, the whole process tree is killed and the
// error wraps ctx's.
//
// The rootfs contract: spec.Root.Path is a snapshot whose changes become a
// layer, so Run leaves it as it found it. Mountpoints the image lacks
// (/proc, /dev, /sys, /etc/hosts, /etc/resolv.conf, /etc itself, targets
// of extra mounts) are created before the RUN and removed after it, on
// every path out of Run, and only while still the empty file or directory
// Run made; parent directories get their mtime back when the RUN did not
// change them. Writes the RUN makes through a mount (e.g. to /etc/hosts)
// land in the mount's source, not in the rootfs. Run also removes the
// spec's per-RUN state directory that Spec made.
func (s *Sandbox) Run(ctx context.Context, spec *specs.Spec, stdin io.Reader, stdout, stderr io.Writer) error {
	if spec == nil || spec.Process == nil || len(spec.Process.Args) == 0 || spec.Root == nil {
		return errors.New("sandbox: spec without root or process")
	}
	if !filepath.IsAbs(spec.Root.Path) || !strings.HasPrefix(spec.Process.Cwd, "/") {
		return fmt.Errorf("sandbox: rootfs %q and cwd %q must be absolute", spec.Root.Path, spec.Process.Cwd)
	}
	defer s.removeState(spec)
	switch s.Isolation {
	case IsolationDefault:
		return s.runBuiltin(ctx, spec, false, stdin, stdout, stderr)
	case IsolationChroot:
		return s.runBuiltin(ctx, spec, true, stdin, stdout, stderr)
	case IsolationOCI:
		return s.runOCI(ctx, spec, stdin, stdout, stderr)
	case IsolationNone:
		return &StartError{Op: "isolating the RUN", Code: codeSetup, Err: errors.New(s.Missing)}
	}
	return fmt.Errorf("sandbox: unknown isolation %v", s.Isolation)
}

// removeState deletes the directory Spec made for this RUN, and nothing
// that is not one.
func (s *Sandbox) removeState(spec *specs.Spec) {
	dir := spec.Annotations[annotationState]
	if dir == "" || s.StateDir == "" || filepath.Dir(dir) != filepath.Clean(s.StateDir) ||
		!strings.HasPrefix(filepath.Base(dir), "run-") {
		return
	}
	os.RemoveAll(dir)
}

func hasNamespace(spec *specs.Spec, t specs.LinuxNamespaceType) bool {
	if spec.Linux == nil {
		return false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == t {
			return true
		}
	}
	return false
}

// runBuiltin runs the spec with the re-executed child, either in fresh
// namespaces with pivot_root or, for chroot isolation, with chroot and
// whatever namespaces CAP_SYS_ADMIN allows.
func (s *Sandbox) runBuiltin(ctx context.Context, spec *specs.Spec, chroot bool, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	newNet := hasNamespace(spec, specs.NetworkNamespace)
	private := newNet && spec.Annotations[annotationNetwork] == NetworkPrivate
	cfg := childConfig{Spec: spec, Chroot: chroot, CanMount: true, NewNet: newNet && !private, JoinNet: private, NewUTS: true,
		ProcBind: s.ProcBind, NoHostname: s.NoHostname}
	flags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC)
	if !chroot {
		flags |= unix.CLONE_NEWPID
	}
	if cfg.NewNet {
		flags |= unix.CLONE_NEWNET
	}
	if chroot && (s.NoMounts || !haveCap(unix.CAP_SYS_ADMIN)) {
		cfg, flags = noNamespaces(cfg), 0
	}
	changes, err := s.prepare(spec, cfg.CanMount)
	if err != nil {
		return err
	}
	defer func() { err = s.cleanup(changes, err) }()
	err = s.start(ctx, cfg, flags, stdin, stdout, stderr)
	var se *StartError
	if errors.As(err, &se) && se.Op == "starting sandbox" && errors.Is(err, unix.EPERM) {
		if !chroot {
			se.Err = fmt.Errorf("%w (creating namespaces is not allowed here: use chroot isolation, see DetectIsolation)", se.Err)
			return err
		}
		// CAP_SYS_ADMIN without the right to unshare (seccomp): plain
		// chroot, with the mountpoints made for that.
		s.log().Debug("sandbox: cannot create namespaces, chroot only", "err", err)
		if err := s.cleanup(changes, nil); err != nil {
			return err
		}
		cfg = noNamespaces(cfg)
		if changes, err = s.prepare(spec, false); err != nil {
			return err
		}
		err = s.start(ctx, cfg, 0, stdin, stdout, stderr)
	}
	return err
}

// prepare makes the mountpoints the RUN needs in its rootfs.
func (s *Sandbox) prepare(spec *specs.Spec, canMount bool) (*rootfsChanges, error) {
	mps, err := s.mountpoints(spec, canMount)
	if err == nil {
		var c *rootfsChanges
		if c, err = prepare(spec.Root.Path, mps); err == nil {
			return c, nil
		}
	}
	return nil, fmt.Errorf("sandbox: %w", err)
}

// noNamespaces is the chroot config when no namespace can be created:
// nothing gets mounted, and the RUN shares the host's hostname and network.
func noNamespaces(cfg childConfig) childConfig {
	cfg.CanMount, cfg.NewNet, cfg.NewUTS, cfg.JoinNet = false, false, false, false
	return cfg
}

// mountpoints lists what Run must provide in the rootfs. Without mounts,
// a missing /etc/hosts or /etc/resolv.conf is written as a copy instead,
// so name resolution works in chroot isolation too.
func (s *Sandbox) mountpoints(spec *specs.Spec, canMount bool) ([]mountpoint, error) {
	if canMount {
		return rootMountpoints(spec.Mounts)
	}
	var mps, skipped []string
	var out []mountpoint
	for _, m := range spec.Mounts {
		if (m.Destination == "/etc/hosts" || m.Destination == "/etc/resolv.conf") && isBind(m) {
			if b, err := os.ReadFile(m.Source); err == nil {
				out = append(out, mountpoint{dest: m.Destination, content: b})
				mps = append(mps, m.Destination)
				continue
			}
		}
		skipped = append(skipped, m.Destination)
	}
	if hasNamespace(spec, specs.NetworkNamespace) {
		skipped = append(skipped, "network=none")
	}
	s.warnOnce(skipped, "no CAP_SYS_ADMIN: chroot isolation without mounts or namespaces",
		"copied_when_missing", mps)
	return out, nil
}

func (s *Sandbox) warnOnce(skipped []string, msg string, args ...any) {
	if len(skipped) > 0 && s.warned.CompareAndSwap(false, true) {
		s.log().Warn("sandbox: "+msg, append([]any{"skipped", skipped}, args...)...)
	}
}

// cleanup undoes prepare and folds its failures into the RUN's error.
func (s *Sandbox) cleanup(c *rootfsChanges, runErr error) error {
	left, err := c.cleanup()
	if len(left) > 0 {
		s.log().Debug("sandbox: mountpoints the RUN filled or replaced stay in the rootfs", "paths", left)
	}
	if err != nil {
		return errors.Join(runErr, fmt.Errorf("sandbox: removing mountpoints from the rootfs: %w", err))
	}
	return runErr
}
