package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const initName = "builder-sandbox-init"

// Exit statuses of a child that never reached the RUN's command, as a
// shell reports them.
const (
	codeSetup         = 125
	codeNotExecutable = 126
	codeNotFound      = 127
)

// The parent hands the child its config on fd 3 and reads reports on fd 4,
// which is close-on-exec: EOF without an error report means exec worked.
const (
	configFD = 3
	reportFD = 4
	netnsFD  = 5 // with JoinNet: the build's private network namespace
)

// childConfig is what the parent sends the re-executed child.
type childConfig struct {
	Spec     *specs.Spec
	Chroot   bool // chroot instead of pivot_root; mounts are best effort
	CanMount bool // the child has a private mount namespace to mount in
	NewNet   bool // the child has its own network namespace
	JoinNet  bool // the child joins the namespace handed over on netnsFD
	NewUTS   bool // the child has its own UTS namespace
	// ProcBind binds this process's /proc where a fresh one cannot be
	// mounted; NoHostname leaves the hostname alone (both: pod limits).
	ProcBind   bool
	NoHostname bool
}

// report is one message from the child, JSON on one line.
type report struct {
	Skipped []string   `json:",omitempty"` // mounts left out (chroot isolation)
	Err     *wireError `json:",omitempty"`
}

// wireError carries a setup failure across the process boundary with its
// errno, so the parent can rebuild an error that errors.Is understands.
type wireError struct {
	Op    string
	Path  string `json:",omitempty"`
	Errno int    `json:",omitempty"`
	Msg   string `json:",omitempty"`
	Code  int
}

func (w *wireError) Error() string {
	s := w.Op
	if w.Path != "" {
		s += " " + w.Path
	}
	if w.Msg != "" {
		s += ": " + w.Msg
	} else if w.Errno != 0 {
		s += ": " + syscall.Errno(w.Errno).Error()
	}
	return s
}

// fail builds a wireError from a failed operation.
func fail(code int, op, p string, err error) *wireError {
	w := &wireError{Op: op, Path: p, Code: code}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		w.Errno = int(errno)
	} else if err != nil {
		w.Msg = err.Error()
	}
	return w
}

// childMain is the re-exec entry point; it runs in the new namespaces and
// ends in exec of the RUN's command or in exit with a report.
func childMain() {
	// Capabilities, no_new_privs and the exec must all happen on one thread.
	runtime.LockOSThread()
	rep := os.NewFile(reportFD, "report")
	unix.CloseOnExec(reportFD)
	var cfg childConfig
	cf := os.NewFile(configFD, "config")
	err := json.NewDecoder(cf).Decode(&cfg)
	cf.Close()
	if err != nil || cfg.Spec == nil || cfg.Spec.Process == nil || cfg.Spec.Root == nil {
		send(rep, report{Err: fail(codeSetup, "reading sandbox config", "", err)})
		os.Exit(codeSetup)
	}
	c := &child{cfg: cfg, spec: cfg.Spec, root: cfg.Spec.Root.Path, rep: rep,
		noSetgroups: readTrim("/proc/self/setgroups") == "deny"} // /proc is gone after chroot
	werr := c.run()
	if werr == nil {
		werr = &wireError{Op: "exec", Msg: "returned", Code: codeSetup}
	}
	send(rep, report{Err: werr})
	os.Exit(werr.Code)
}

func send(w io.Writer, r report) {
	_ = json.NewEncoder(w).Encode(r)
}

type child struct {
	cfg     childConfig
	spec    *specs.Spec
	root    string
	rep     io.Writer
	mounted []string // destinations mounted so far, clean in-rootfs paths
	skipped []string
	devTmp  bool // /dev is a tmpfs of ours: device nodes and links go there
	// noSetgroups: the user namespace's gid map was written without
	// newgidmap, so setgroups(2) is denied.
	noSetgroups bool
}

// run sets the sandbox up and execs; it returns only on failure.
func (c *child) run() *wireError {
	if c.cfg.JoinNet {
		// This thread, locked, is the one that execs: the RUN is in it.
		err := unix.Setns(netnsFD, unix.CLONE_NEWNET)
		unix.Close(netnsFD)
		if err != nil {
			return fail(codeSetup, "joining the build's network namespace", "", err)
		}
	}
	if c.cfg.CanMount {
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fail(codeSetup, "making mounts private", "", err)
		}
	}
	if !c.cfg.Chroot {
		if err := unix.Mount(c.root, c.root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fail(codeSetup, "binding rootfs", c.root, err)
		}
	}
	if c.cfg.CanMount {
		for _, m := range c.spec.Mounts {
			if err := c.mount(m); err != nil {
				if !c.cfg.Chroot {
					return err
				}
				c.skipped = append(c.skipped, m.Destination)
			}
		}
		if err := c.populateDev(); err != nil {
			return err
		}
	}
	if c.cfg.NewNet || c.cfg.JoinNet {
		if err := loopbackUp(); err != nil {
			return fail(codeSetup, "bringing up lo", "", err)
		}
	}
	if c.cfg.Chroot {
		if c.cfg.CanMount {
			c.maskPaths(c.root)
		}
		if err := unix.Chroot(c.root); err != nil {
			return fail(codeSetup, "chroot", c.root, err)
		}
	} else {
		if err := pivotRoot(c.root); err != nil {
			return err
		}
		c.maskPaths("/")
		if c.spec.Root.Readonly {
			if err := makeReadonly("/", true); err != nil {
				return fail(codeSetup, "making rootfs read-only", "", err)
			}
		}
	}
	if err := unix.Chdir("/"); err != nil {
		return fail(codeSetup, "chdir", "/", err)
	}
	if c.cfg.NewUTS && c.spec.Hostname != "" && !c.cfg.NoHostname {
		if err := unix.Sethostname([]byte(c.spec.Hostname)); err != nil {
			return fail(codeSetup, "sethostname", c.spec.Hostname, err)
		}
	}
	if len(c.skipped) > 0 {
		send(c.rep, report{Skipped: c.skipped})
	}
	p := c.spec.Process
	if err := unix.Chdir(p.Cwd); err != nil {
		return fail(codeSetup, "working directory", p.Cwd, err)
	}
	for _, rl := range p.Rlimits {
		res, ok := rlimitNames[strings.ToUpper(rl.Type)]
		if !ok {
			return fail(codeSetup, "ulimit", rl.Type, errors.New("unknown resource"))
		}
		if err := unix.Setrlimit(res, &unix.Rlimit{Cur: rl.Soft, Max: rl.Hard}); err != nil {
			return fail(codeSetup, "ulimit", rl.Type, err)
		}
	}
	if err := setCredentials(p, c.cfg.Chroot, c.noSetgroups); err != nil {
		return err
	}
	return execProcess(p)
}

// pivotRoot makes root the process's root and detaches the old one, so no
// host path stays reachable. pivot_root(".", ".") stacks the old root on
// the new one; unmounting "." then drops it without a put_old directory.
func pivotRoot(root string) *wireError {
	if err := unix.Chdir(root); err != nil {
		return fail(codeSetup, "chdir", root, err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fail(codeSetup, "pivot_root", root, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fail(codeSetup, "detaching old root", "", err)
	}
	return nil
}

// loopbackUp sets IFF_UP on lo in the child's own network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// execProcess looks Args[0] up in the RUN's PATH, inside the new root and
// with the RUN's credentials, and execs it.
func execProcess(p *specs.Process) *wireError {
	file, werr := lookPath("", p.Args[0], p.Env)
	if werr != nil {
		return werr
	}
	err := unix.Exec(file, p.Args, p.Env)
	code := codeNotExecutable
	if errors.Is(err, unix.ENOENT) {
		code = codeNotFound // e.g. a script's interpreter or the dynamic loader
	}
	return fail(code, "exec", file, err)
}

// lookPath finds file as execvp would, in the PATH of env, below root
// (root "" is the current root). It returns an in-root path.
func lookPath(root, file string, env []string) (string, *wireError) {
	if strings.Contains(file, "/") {
		if err := executable(root, file); err != nil {
			code := codeNotExecutable
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
				code = codeNotFound
			}
			return "", fail(code, "exec", file, err)
		}
		return file, nil
	}
	pathEnv, ok := lookupEnv(env, "PATH")
	if !ok {
		pathEnv = DefaultPath
	}
	var denied error
	for _, dir := range strings.Split(pathEnv, ":") {
		if dir == "" {
			dir = "."
		}
		cand := path.Join(dir, file)
		err := executable(root, cand)
		if err == nil {
			return cand, nil
		}
		if errors.Is(err, unix.EACCES) && denied == nil {
			denied = err
		}
	}
	if denied != nil {
		return "", fail(codeNotExecutable, "exec", file, denied)
	}
	return "", &wireError{Op: "exec", Path: fmt.Sprintf("%q", file),
		Msg: "executable file not found in $PATH", Errno: int(unix.ENOENT), Code: codeNotFound}
}

// executable checks that p is a regular file with an execute bit.
func executable(root, p string) error {
	full := p
	if root != "" {
		var err error
		if full, err = secureJoin(root, p); err != nil {
			return err
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(full, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return unix.EISDIR
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o111 == 0 {
		return unix.EACCES
	}
	return nil
}

// rlimitNames maps the runtime spec's RLIMIT_* names to resources.
var rlimitNames = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}
