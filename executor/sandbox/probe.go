package sandbox

// What this process may do for RUN, found by trying it once in a child:
// create namespaces, mount a private tree, mount or bind /proc, set a
// hostname, chroot. A pod forbids some of these (seccomp, dropped
// capabilities, a masked /proc) and each refusal has a fallback; Probe
// finds them before a build starts, so a build never discovers them in
// the middle of a RUN, and says each step down once with its reason.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Env is what Probe found.
type Env struct {
	Euid     int
	InUserNS bool   // this process runs in a user namespace (builder's own, or a pod's)
	UIDMap   string // /proc/self/uid_map, as the kernel shows it
	GIDMap   string
	// MappedIDs is how many uids the user namespace maps (0: not in one).
	MappedIDs  uint64
	Seccomp    string // "disabled", "strict" or "filter" (/proc/self/status)
	NoNewPrivs bool
	CapBnd     uint64 // the bounding set: what any RUN here can be given at most
	CapEff     uint64

	// Namespaces is nil when a RUN can have its own mount, PID and IPC
	// namespaces (and, for a non-root user outside one, a user namespace).
	Namespaces error
	// MountNS is nil when a private mount namespace can be made at all
	// (chroot isolation mounts in one when it can).
	MountNS error
	// ProcMount is nil when a fresh procfs mounts there; ProcBind when the
	// existing /proc can be bound instead (a pod's /proc with masked
	// paths refuses the former).
	ProcMount, ProcBind error
	// Hostname is nil when a RUN's UTS namespace may set its hostname
	// (seccomp profiles refuse sethostname without CAP_SYS_ADMIN).
	Hostname error
	// Chroot is nil when chroot(2) works here (CAP_SYS_CHROOT, allowed by
	// seccomp).
	Chroot error
}

// probeResult is what the probe child reports on stdout.
type probeResult struct {
	MountPrivate string `json:",omitempty"`
	ProcMount    string `json:",omitempty"`
	ProcBind     string `json:",omitempty"`
	Hostname     string `json:",omitempty"`
	Chroot       string `json:",omitempty"`
}

var (
	probeOnce sync.Once
	probed    *Env
)

// Probe finds, once per process, what RUN isolation may use here.
func Probe() *Env {
	probeOnce.Do(func() { probed = probe() })
	return probed
}

var (
	selfOnce sync.Once
	self     Env
)

// Self is the part of Probe that /proc tells without a child process: the
// ids, the user namespace and its maps, the seccomp mode, no_new_privs and
// capabilities; the namespace and mount findings are left empty.
func Self() Env {
	selfOnce.Do(func() {
		e := Env{Euid: os.Geteuid()}
		e.UIDMap, e.GIDMap = readTrim("/proc/self/uid_map"), readTrim("/proc/self/gid_map")
		e.InUserNS = inUserNS()
		if e.InUserNS {
			e.MappedIDs = mappedIDs(e.UIDMap)
		}
		e.readStatus()
		self = e
	})
	return self
}

func probe() *Env {
	s := Self()
	e := &s
	needUser := e.Euid != 0
	if needUser {
		if v := readTrim("/proc/sys/user/max_user_namespaces"); v == "0" {
			err := fmt.Errorf("user namespaces are disabled (user.max_user_namespaces=0)")
			e.Namespaces, e.MountNS = err, err
		} else if v := readTrim("/proc/sys/kernel/unprivileged_userns_clone"); v == "0" {
			err := fmt.Errorf("unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0)")
			e.Namespaces, e.MountNS = err, err
		}
	}
	full := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC)
	var res probeResult
	var err error
	if e.Namespaces == nil {
		if res, err = runProbe(full, needUser); err != nil {
			e.Namespaces = err
			// A mount namespace alone, for chroot isolation's mounts?
			if res, err = runProbe(unix.CLONE_NEWNS, needUser); err != nil {
				e.MountNS = err
			}
		}
	}
	if e.MountNS != nil {
		// No namespace at all: can this process still chroot?
		if res, err = runProbe(0, false); err != nil {
			res = probeResult{Chroot: err.Error()}
		}
	}
	e.ProcMount, e.ProcBind = errOf(res.ProcMount), errOf(res.ProcBind)
	e.Hostname, e.Chroot = errOf(res.Hostname), errOf(res.Chroot)
	if e.MountNS == nil && res.MountPrivate != "" {
		e.MountNS = errOf(res.MountPrivate)
	}
	if e.Namespaces == nil && e.MountNS != nil {
		e.Namespaces = e.MountNS
	}
	if e.Namespaces == nil && e.ProcMount != nil && e.ProcBind != nil {
		e.Namespaces = fmt.Errorf("neither mounting /proc (%v) nor binding it (%v) works", e.ProcMount, e.ProcBind)
	}
	return e
}

func errOf(s string) error {
	if s == "" {
		return nil
	}
	return fmt.Errorf("%s", s)
}

// runProbe runs the probe child with flags (in a user namespace mapping
// only this user when user is set) and reads its report.
func runProbe(flags uintptr, user bool) (probeResult, error) {
	attr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Cloneflags: flags}
	if user {
		attr.Cloneflags |= unix.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	}
	cmd := command(probeName, strconv.FormatUint(uint64(flags), 10))
	cmd.Env = []string{}
	cmd.SysProcAttr = attr
	var out, errBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errBuf
	err := start(cmd)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		why := strings.TrimSpace(errBuf.String())
		if why == "" {
			why = err.Error()
			var pe *os.PathError
			if errors.As(err, &pe) {
				why = pe.Err.Error() // the clone's errno, not "fork/exec /proc/self/exe"
			}
		}
		return probeResult{}, fmt.Errorf("%s", why)
	}
	var res probeResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return probeResult{}, fmt.Errorf("probe: %v", err)
	}
	return res, nil
}

// probeMain runs in the probe child: it tries what a RUN's setup does and
// reports each refusal.
func probeMain() {
	flags, _ := strconv.ParseUint(os.Args[len(os.Args)-1], 10, 64)
	var r probeResult
	msg := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	if flags&unix.CLONE_NEWNS != 0 {
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			r.MountPrivate = "making mounts private: " + err.Error()
		} else {
			// The mounts go over the temp directory itself, in this
			// private mount namespace: nothing to create, nothing left
			// behind when the probe exits (os.Exit runs no deferred calls).
			dir := os.TempDir()
			if flags&unix.CLONE_NEWPID != 0 {
				r.ProcMount = msg(unix.Mount("proc", dir, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""))
				unix.Unmount(dir, unix.MNT_DETACH)
			} else {
				r.ProcMount = "no PID namespace of its own"
			}
			r.ProcBind = msg(unix.Mount("/proc", dir, "", unix.MS_BIND|unix.MS_REC, ""))
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	} else {
		r.ProcMount, r.ProcBind = "no mount namespace", "no mount namespace"
	}
	if flags&unix.CLONE_NEWUTS != 0 {
		if err := unix.Sethostname([]byte("builder")); err != nil {
			r.Hostname = "sethostname: " + err.Error()
		}
	} else {
		r.Hostname = "no UTS namespace"
	}
	// chroot to "/" changes nothing, but asks the same permission.
	if err := unix.Chroot("/"); err != nil {
		r.Chroot = "chroot: " + err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(r)
	os.Exit(0)
}

// readStatus fills the seccomp mode, no_new_privs and capability sets
// from /proc/self/status.
func (e *Env) readStatus() {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Seccomp":
			e.Seccomp = map[string]string{"0": "disabled", "1": "strict", "2": "filter"}[v]
		case "NoNewPrivs":
			e.NoNewPrivs = v == "1"
		case "CapBnd":
			e.CapBnd, _ = strconv.ParseUint(v, 16, 64)
		case "CapEff":
			e.CapEff, _ = strconv.ParseUint(v, 16, 64)
		}
	}
}

// mappedIDs counts the ids of a uid_map.
func mappedIDs(m string) uint64 {
	var n uint64
	for _, line := range strings.Split(m, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 {
			c, _ := strconv.ParseUint(f[2], 10, 64)
			n += c
		}
	}
	return n
}

// CapNames names the capabilities of mask.
func CapNames(mask uint64) []string {
	var out []string
	for i, n := range capNames() {
		if mask&(1<<uint(i)) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// MissingDefaultCaps are the capabilities a RUN gets by default (Docker's
// set) that this environment cannot give.
func (e *Env) MissingDefaultCaps() []string {
	m, _ := capMask(defaultCaps())
	return CapNames(m &^ e.CapBnd)
}

// UserNamespaceError is nil when this process may create a user namespace
// (mapping only itself: no newuidmap involved). Pods under Kubernetes'
// RuntimeDefault seccomp profile refuse it.
//
// Only the clone and the id maps are tried: the child then execs a path
// that cannot exist, so no program starts (every builder command that uses
// the store asks this first, and a Go program's start costs milliseconds).
// The clone's refusal and the maps' come back as their own errno; the exec's
// ENOTDIR (or ENOENT without /proc) says everything before it worked.
func UserNamespaceError() error {
	cmd := exec.Command(userNSProbePath)
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Cloneflags: unix.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
	}
	err := cmd.Run()
	var pe *os.PathError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe) && (errors.Is(pe.Err, unix.ENOTDIR) || errors.Is(pe.Err, unix.ENOENT)):
		return nil
	case errors.As(err, &pe):
		return pe.Err // the clone's errno, not "fork/exec ..."
	default:
		return err
	}
}

// userNSProbePath is never a program: /proc/self/exe is a file, not a directory.
const userNSProbePath = "/proc/self/exe/builder-userns-probe"

// BoundingHas reports whether capability c is in this process's bounding
// set (what a user namespace made from here could hold).
func BoundingHas(c int) bool {
	r, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
	return err == nil && r == 1
}
