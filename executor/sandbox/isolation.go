package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"
)

// Isolation selects how a RUN is isolated from the host.
type Isolation int

const (
	// IsolationDefault is the built-in runtime: new mount, PID, UTS and IPC
	// namespaces (and a network namespace for network "none") inside the
	// user namespace the builder already runs in, with pivot_root.
	IsolationDefault Isolation = iota
	// IsolationChroot needs no namespace at all: chroot into the rootfs,
	// plus bind mounts when CAP_SYS_ADMIN allows a private mount namespace.
	// It is for pods that forbid user namespaces; it is not a security
	// boundary.
	IsolationChroot
	// IsolationOCI writes an OCI bundle and hands it to runc or crun.
	IsolationOCI
)

// String returns the canonical name that ParseIsolation accepts.
func (i Isolation) String() string {
	switch i {
	case IsolationDefault:
		return "default"
	case IsolationChroot:
		return "chroot"
	case IsolationOCI:
		return "oci"
	}
	return fmt.Sprintf("Isolation(%d)", int(i))
}

// ParseIsolation maps a --isolation value (or BUILDAH_ISOLATION-style
// value) to an Isolation:
//
//	"", "default", "rootless", "userns"  → IsolationDefault
//	"chroot"                             → IsolationChroot
//	"oci", "runc", "crun"                → IsolationOCI
//
// "rootless" means the built-in user-namespace sandbox here (buildah's
// "rootless" is runc in rootless mode; ours needs no runtime binary).
// Callers that get "runc" or "crun" should also use it as Sandbox.Runtime.
func ParseIsolation(s string) (Isolation, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "default", "rootless", "userns":
		return IsolationDefault, nil
	case "chroot":
		return IsolationChroot, nil
	case "oci", "runc", "crun":
		return IsolationOCI, nil
	}
	return 0, fmt.Errorf("unknown isolation %q (want default, rootless, chroot or oci)", s)
}

const probeName = "builder-sandbox-probe"

// DetectIsolation says which isolation works in this process: the default
// when it can create the namespaces a RUN needs (and, when not uid 0, a
// user namespace) and mount /proc in them; chroot otherwise. The string
// says why, for a log line.
func DetectIsolation() (Isolation, string) {
	flags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC)
	attr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() != 0 {
		if v := readTrim("/proc/sys/user/max_user_namespaces"); v == "0" {
			return IsolationChroot, "user namespaces are disabled (user.max_user_namespaces=0): using chroot isolation"
		}
		if v := readTrim("/proc/sys/kernel/unprivileged_userns_clone"); v == "0" {
			return IsolationChroot, "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0): using chroot isolation"
		}
		flags |= unix.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	}
	attr.Cloneflags = flags
	cmd := exec.Command(reexec.Self())
	cmd.Args = []string{probeName}
	cmd.Env = []string{}
	cmd.SysProcAttr = attr
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	if err := cmd.Run(); err != nil {
		why := strings.TrimSpace(errBuf.String())
		if why == "" {
			why = err.Error()
		}
		return IsolationChroot, fmt.Sprintf("cannot create mount/PID namespaces or mount /proc here (%s): using chroot isolation", why)
	}
	switch {
	case os.Geteuid() != 0:
		return IsolationDefault, "unprivileged user namespaces available"
	case inUserNS():
		return IsolationDefault, "in a user namespace that can create mount, PID, UTS and IPC namespaces"
	}
	return IsolationDefault, "root: mount, PID, UTS and IPC namespaces available"
}

// probeMain runs in the probe child, in its fresh namespaces: a RUN needs
// a private mount tree and its own /proc.
func probeMain() {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		fmt.Fprintf(os.Stderr, "making / private: %v", err)
		os.Exit(1)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		fmt.Fprintf(os.Stderr, "mounting proc: %v", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func init() {
	// The re-exec entry points are the package's only global state.
	reexec.Register(initName, childMain)
	reexec.Register(netHolderName, netHolderMain)
	reexec.Register(probeName, probeMain)
	reexec.Register(ociShimName, ociShimMain)
}
