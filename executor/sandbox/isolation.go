package sandbox

import (
	"fmt"
	"os"
	"strings"

	"go.podman.io/storage/pkg/reexec"
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
	case IsolationNone:
		return "none"
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

// IsolationNone is no isolation at all: where neither namespaces nor
// chroot are allowed (a non-root pod under Kubernetes' RuntimeDefault
// seccomp, or with every capability dropped), RUN cannot run; builds
// without RUN still work.
const IsolationNone Isolation = -1

// Plan is how RUN steps will be isolated here and what they go without.
type Plan struct {
	Isolation Isolation
	// ProcBind: a fresh procfs cannot be mounted (a pod's masked /proc),
	// so RUN steps get this process's /proc, bound.
	ProcBind bool
	// NoHostname: sethostname is refused (seccomp): RUN steps keep this
	// process's hostname.
	NoHostname bool
	// NoMounts: chroot without a mount namespace: no /proc, /dev, /sys or
	// bind mounts of the RUN's own.
	NoMounts bool
	// Downgrades say each step down from the strongest isolation, with its
	// reason, for the build to print once.
	Downgrades []string
	// Missing, for IsolationNone, says what RUN would need.
	Missing string
}

// Choose picks the strongest isolation e allows: the user-namespace
// sandbox (own mount, PID, IPC and UTS namespaces, pivot_root), then
// chroot in a mount namespace, then chroot alone, then none. With forced,
// that isolation or an error naming what it lacks: never a silent step
// down.
func (e *Env) Choose(forced *Isolation) (Plan, error) {
	var p Plan
	switch {
	case forced != nil && *forced == IsolationOCI:
		return Plan{Isolation: IsolationOCI}, nil
	case e.Namespaces == nil && (forced == nil || *forced == IsolationDefault):
		p.Isolation = IsolationDefault
	case forced != nil && *forced == IsolationDefault:
		return p, fmt.Errorf("--isolation=default needs mount, PID and IPC namespaces%s, and here: %v", userNote(e), e.Namespaces)
	case e.Chroot == nil:
		p.Isolation = IsolationChroot
		if forced == nil {
			p.Downgrades = append(p.Downgrades, fmt.Sprintf("using chroot isolation: the RUN sandbox's namespaces cannot be created here (%v)", e.Namespaces))
		}
		if e.MountNS != nil {
			p.NoMounts = true
			p.Downgrades = append(p.Downgrades, fmt.Sprintf("chroot without a mount namespace (%v): RUN steps get no /proc, /dev or /sys of their own and no bind mounts", e.MountNS))
		}
	case forced != nil && *forced == IsolationChroot:
		return p, fmt.Errorf("--isolation=chroot: chroot is not allowed here (%v)", e.Chroot)
	default:
		p.Isolation = IsolationNone
		p.Missing = fmt.Sprintf("RUN needs either namespaces%s (here: %v) or chroot (here: %v)", userNote(e), e.Namespaces, e.Chroot)
		p.Downgrades = append(p.Downgrades, "no RUN isolation is possible here: Dockerfiles without RUN still build; "+p.Missing)
		return p, nil
	}
	if p.Isolation == IsolationDefault || !p.NoMounts {
		if e.ProcMount != nil && e.ProcBind == nil {
			p.ProcBind = true
			p.Downgrades = append(p.Downgrades, fmt.Sprintf("a fresh /proc cannot be mounted (%v; a container's masked /proc does this, and Kubernetes' securityContext.procMount: Unmasked lifts it): RUN steps see this container's /proc", e.ProcMount))
		}
	}
	if p.Isolation == IsolationDefault && e.Hostname != nil {
		p.NoHostname = true
		p.Downgrades = append(p.Downgrades, fmt.Sprintf("the hostname cannot be set (%v; seccomp profiles allow sethostname only with CAP_SYS_ADMIN): RUN steps keep this container's hostname", e.Hostname))
	}
	if miss := e.MissingDefaultCaps(); len(miss) > 0 && e.CapBnd != 0 {
		p.Downgrades = append(p.Downgrades, fmt.Sprintf("RUN steps run without %s: this environment's bounding set lacks them", strings.Join(miss, ", ")))
	}
	return p, nil
}

func userNote(e *Env) string {
	if e.Euid != 0 && !e.InUserNS {
		return " in a user namespace"
	}
	return ""
}

// DetectIsolation says which isolation works in this process and why it
// is not the strongest, for callers that need only that (see Choose).
func DetectIsolation() (Isolation, string) {
	p, _ := Probe().Choose(nil)
	return p.Isolation, strings.Join(p.Downgrades, "; ")
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
