package sandbox

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const ociShimName = "builder-sandbox-oci-shim"

// runtimePath finds the OCI runtime binary.
func (s *Sandbox) runtimePath() (string, error) {
	names := []string{s.Runtime}
	if s.Runtime == "" {
		names = []string{"runc", "crun"}
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("sandbox: OCI runtime %s not found", strings.Join(names, " or "))
}

// runOCI writes spec as a bundle under StateDir and runs it with
// `<runtime> run`. We already are uid 0 in our user namespace, so the
// bundle has no id mappings and no cgroup resources: runc then runs in its
// rootless mode by itself. crun refuses a hybrid cgroup layout, so it runs
// through a shim that hides the cgroup2 mount (see ociShimMain).
func (s *Sandbox) runOCI(ctx context.Context, spec *specs.Spec, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	rt, err := s.runtimePath()
	if err != nil {
		return err
	}
	if s.StateDir == "" {
		return errors.New("sandbox: OCI isolation needs a StateDir")
	}
	// The runtime's own messages for these are long and land on stderr;
	// check them here so the error says what is wrong.
	root := spec.Root.Path
	if err := dirInRoot(root, spec.Process.Cwd); err != nil {
		return &StartError{Op: "working directory", Path: spec.Process.Cwd, Code: codeSetup, Err: err}
	}
	if _, werr := lookPath(root, spec.Process.Args[0], spec.Process.Env); werr != nil {
		return startError(werr)
	}
	mps, err := rootMountpoints(spec.Mounts)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	changes, err := prepare(root, mps)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	defer func() { err = s.cleanup(changes, err) }()

	bundle, err := os.MkdirTemp(s.StateDir, "oci-")
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	defer os.RemoveAll(bundle)
	bs := bundleSpec(spec)
	if v := runtimeSpecVersion(rt); v != "" {
		bs.Version = v // crun 1.8 refuses a newer ociVersion than it knows
	}
	cfg, err := json.MarshalIndent(bs, "", "\t")
	if err == nil {
		err = os.WriteFile(filepath.Join(bundle, "config.json"), cfg, 0o600)
	}
	if err != nil {
		return fmt.Errorf("sandbox: writing bundle: %w", err)
	}
	stateRoot := filepath.Join(s.StateDir, "oci-state")
	if err := os.MkdirAll(stateRoot, 0o700); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	id := "builder-" + hex.EncodeToString(rnd[:])
	logFile := filepath.Join(bundle, "runtime.log")
	global := []string{"--root", stateRoot, "--log", logFile, "--log-format", "json"}
	cmd := runtimeCmd(rt, append(global, "run", "--bundle", bundle, id)...)
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	st := &stdio{}
	if err := st.attach(cmd, stdin, stdout, stderr); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	err = cmd.Start()
	st.closeChildEnds()
	if err != nil {
		st.abort()
		return &StartError{Op: "starting " + rt, Code: codeSetup, Err: err}
	}
	pid := cmd.Process.Pid
	stop := context.AfterFunc(ctx, func() {
		runtimeCmd(rt, "--root", stateRoot, "kill", id, "KILL").Run()
		syscall.Kill(-pid, syscall.SIGKILL)
	})
	waitErr := cmd.Wait()
	stop()
	syscall.Kill(-pid, syscall.SIGKILL)
	st.wait()
	runtimeCmd(rt, "--root", stateRoot, "delete", "--force", id).Run() // usually gone already
	if ctx.Err() != nil && waitErr != nil {
		return fmt.Errorf("sandbox: RUN stopped: %w", context.Cause(ctx))
	}
	if waitErr != nil {
		if msg := runtimeError(logFile); msg != "" {
			return &StartError{Op: filepath.Base(rt) + " run", Code: codeSetup, Err: errors.New(msg)}
		}
	}
	return exitError(waitErr)
}

// runtimeCmd runs the runtime with args; crun goes through ociShimMain.
func runtimeCmd(rt string, args ...string) *exec.Cmd {
	if filepath.Base(rt) != "crun" {
		cmd := exec.Command(rt, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{}
		return cmd
	}
	cmd := command(ociShimName, append([]string{rt, "--cgroup-manager=disabled"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS}
	return cmd
}

// bundleSpec is spec as the runtime should see it: no user namespace or
// id maps (we are already in ours), no cgroup settings, no terminal.
func bundleSpec(spec *specs.Spec) *specs.Spec {
	out := *spec
	p := *spec.Process
	p.Terminal = false
	out.Process = &p
	if spec.Linux != nil {
		l := *spec.Linux
		l.UIDMappings, l.GIDMappings, l.Resources, l.CgroupsPath = nil, nil, nil, ""
		l.Namespaces = nil
		for _, ns := range spec.Linux.Namespaces {
			if ns.Type != specs.UserNamespace && ns.Type != specs.CgroupNamespace {
				l.Namespaces = append(l.Namespaces, ns)
			}
		}
		out.Linux = &l
	}
	return &out
}

// runtimeSpecVersion is the runtime-spec version the runtime says it
// implements ("spec: 1.0.2-dev" in --version), when that is older than
// ours. The bundles use nothing newer than 1.0.
func runtimeSpecVersion(rt string) string {
	out, err := exec.Command(rt, "--version").Output()
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(out), "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "spec: ")
		if ok && strings.HasPrefix(v, "1.") && olderVersion(v, specs.Version) {
			return v
		}
	}
	return ""
}

// olderVersion compares dotted versions numerically, ignoring suffixes.
func olderVersion(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < 3; i++ {
		var x, y int
		if i < len(pa) {
			fmt.Sscanf(pa[i], "%d", &x)
		}
		if i < len(pb) {
			fmt.Sscanf(pb[i], "%d", &y)
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// runtimeError returns the runtime's own error messages from its JSON log.
func runtimeError(logFile string) string {
	f, err := os.Open(logFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	var msgs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct{ Level, Msg string }
		if json.Unmarshal(sc.Bytes(), &e) == nil && (e.Level == "error" || e.Level == "fatal") {
			msgs = append(msgs, e.Msg)
		}
	}
	return strings.Join(msgs, "; ")
}

// dirInRoot checks that p, resolved inside root, is a directory.
func dirInRoot(root, p string) error {
	full, err := secureJoin(root, p)
	if err != nil {
		return err
	}
	fi, err := os.Stat(full)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return unix.ENOTDIR
	}
	return nil
}

// ociShimMain runs crun in a private mount namespace where the cgroup2
// mount of a hybrid layout is covered by an empty tmpfs: crun 1.8 refuses
// hybrid layouts whose cgroup2 has controllers, and with its cgroup
// manager disabled it needs no cgroup at all. Args: runtime, its args.
func ociShimMain() {
	if len(os.Args) < 2 {
		os.Exit(codeSetup)
	}
	var st unix.Statfs_t
	hybrid := unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.TMPFS_MAGIC &&
		unix.Statfs("/sys/fs/cgroup/unified", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
	if hybrid {
		err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, "")
		if err == nil {
			err = unix.Mount("tmpfs", "/sys/fs/cgroup/unified", "tmpfs", unix.MS_RDONLY, "size=0")
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "sandbox: hiding cgroup2 from %s: %v\n", os.Args[1], err)
			os.Exit(codeSetup)
		}
	}
	err := unix.Exec(os.Args[1], os.Args[1:], os.Environ())
	fmt.Fprintf(os.Stderr, "sandbox: exec %s: %v\n", os.Args[1], err)
	os.Exit(codeSetup)
}
