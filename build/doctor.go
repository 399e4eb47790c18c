package build

// `builder info` and `builder doctor`: what a build here would use and
// go without, found the way a build finds it (the same probe, the same
// snapshot detection), and for each shortfall the fix, written for a
// Kubernetes pod and for a laptop.

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/builder-dev/builder/executor/sandbox"
	"github.com/builder-dev/builder/images"
	"github.com/builder-dev/builder/snapshot"
	"golang.org/x/sys/unix"
)

// HostInfo is what `builder info` reports.
type HostInfo struct {
	Host struct {
		OS, Arch, Kernel, Distribution string
		CPUs                           int
		MemTotalMiB                    uint64
		Cgroup                         string // "v2", "v1" or ""
	}
	Process struct {
		Euid       int
		UserNS     bool
		UIDMap     string
		GIDMap     string
		MappedIDs  uint64
		NoUserNS   string `json:",omitempty"` // why there is none
		Seccomp    string
		NoNewPrivs bool
		Bounding   []string
	}
	Store struct {
		GraphRoot, RunRoot, Driver string
	}
	Isolation   string
	Fallbacks   []string `json:",omitempty"`
	Snapshotter string
	// SnapshotterWhy says why snapshots are copies ("" otherwise).
	SnapshotterWhy string `json:",omitempty"`
	Network        string
	Emulators      []string
}

// Info gathers HostInfo for the store st.
func Info(st *images.Store) HostInfo {
	var h HostInfo
	h.Host.OS, h.Host.Arch, h.Host.CPUs = runtime.GOOS, runtime.GOARCH, runtime.NumCPU()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.Host.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	h.Host.Distribution = osRelease()
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		h.Host.MemTotalMiB = uint64(si.Totalram) * uint64(si.Unit) >> 20
	}
	var fs unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &fs) == nil {
		h.Host.Cgroup = "v1"
		if fs.Type == unix.CGROUP2_SUPER_MAGIC {
			h.Host.Cgroup = "v2"
		}
	}
	e := sandbox.Probe()
	p := &h.Process
	p.Euid, p.UserNS, p.UIDMap, p.GIDMap, p.MappedIDs = e.Euid, e.InUserNS, e.UIDMap, e.GIDMap, e.MappedIDs
	p.NoUserNS, p.Seccomp, p.NoNewPrivs, p.Bounding = NoUserNamespace(), e.Seccomp, e.NoNewPrivs, sandbox.CapNames(e.CapBnd)
	so := st.Storage()
	h.Store.GraphRoot, h.Store.RunRoot, h.Store.Driver = so.GraphRoot(), so.RunRoot(), so.GraphDriverName()
	plan, _ := e.Choose(nil)
	h.Isolation, h.Fallbacks = plan.Isolation.String(), plan.Downgrades
	if d, why, err := snapshot.DetectWhy(st.Dir("snapshots"), nil); err == nil {
		h.Snapshotter, h.SnapshotterWhy = d.Name(), why
	}
	h.Network = "private"
	if err := sandbox.PrivateNetwork(); err != nil {
		h.Network = "none (" + err.Error() + ")"
	}
	h.Emulators = sandbox.Emulators(os.Getenv("BUILDER_BINFMT_MISC"))
	return h
}

func osRelease() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// Check is one finding of Doctor.
type Check struct {
	Name   string
	Status string // "ok", "warn" or "fail"
	Detail string
	// Pod and Laptop say how to fix a warn or fail there.
	Pod, Laptop string `json:",omitempty"`
}

// Doctor checks what builds here need and says, for each shortfall, what
// it costs and how to fix it.
func Doctor(st *images.Store) []Check {
	h := Info(st)
	e := sandbox.Probe()
	plan, _ := e.Choose(nil)
	var cs []Check
	add := func(c Check) { cs = append(cs, c) }

	switch {
	case h.Process.Euid == 0 && !h.Process.UserNS:
		add(Check{Name: "user namespace", Status: "ok", Detail: "running as root"})
	case h.Process.NoUserNS != "":
		add(Check{Name: "user namespace", Status: "fail", Detail: "none: " + h.Process.NoUserNS + "; the local store cannot hold layers and RUN has no isolation",
			Pod:    "let the pod create user namespaces: securityContext.seccompProfile {type: Unconfined} or a Localhost profile that allows unshare, keep the capabilities (do not drop ALL), or give the pod its own user namespace (hostUsers: false)",
			Laptop: "sysctl -w user.max_user_namespaces=15000 (and kernel.unprivileged_userns_clone=1 where it exists)"})
	default:
		add(Check{Name: "user namespace", Status: "ok", Detail: "uid map " + strings.Join(strings.Fields(h.Process.UIDMap), " ")})
	}
	if h.Process.UserNS && h.Process.MappedIDs == 1 && h.Process.Euid == 0 {
		add(Check{Name: "id mapping", Status: "warn", Detail: "a single id is mapped (" + singleIDWhy() + "): RUN cannot chown to other ids",
			Pod:    "securityContext.allowPrivilegeEscalation: true (newuidmap's file capabilities need it), newuidmap/newgidmap with cap_setuid/cap_setgid file capabilities in the image, sub-id ranges for the user in /etc/subuid and /etc/subgid within the pod's 65536 ids (e.g. build:1001:64535)",
			Laptop: "apt-get install uidmap; usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER"})
	} else if h.Process.UserNS {
		add(Check{Name: "id mapping", Status: "ok", Detail: fmt.Sprintf("%d ids mapped", h.Process.MappedIDs)})
	}
	switch plan.Isolation {
	case sandbox.IsolationDefault:
		add(Check{Name: "RUN isolation", Status: "ok", Detail: "own mount, PID, IPC and UTS namespaces, pivot_root"})
	case sandbox.IsolationChroot:
		add(Check{Name: "RUN isolation", Status: "warn", Detail: "chroot only: " + fmt.Sprint(e.Namespaces),
			Pod:    "a seccomp profile that allows unshare and mount (Unconfined or Localhost), or hostUsers: false",
			Laptop: "allow unprivileged user namespaces (sysctl user.max_user_namespaces)"})
	default:
		add(Check{Name: "RUN isolation", Status: "fail", Detail: plan.Missing + "; Dockerfiles without RUN still build",
			Pod:    "any of: seccompProfile Unconfined or a Localhost profile allowing unshare/mount; runAsUser: 0 with the default capabilities (chroot); hostUsers: false",
			Laptop: "allow unprivileged user namespaces"})
	}
	if plan.ProcBind {
		add(Check{Name: "/proc", Status: "warn", Detail: "a fresh /proc cannot be mounted (" + fmt.Sprint(e.ProcMount) + "): RUN steps see this container's /proc",
			Pod: "securityContext.procMount: Unmasked (with hostUsers: false)", Laptop: "(containers only)"})
	} else if plan.Isolation != sandbox.IsolationNone {
		add(Check{Name: "/proc", Status: "ok", Detail: "RUN steps get their own /proc"})
	}
	if plan.NoHostname {
		add(Check{Name: "hostname", Status: "warn", Detail: "sethostname is refused (" + fmt.Sprint(e.Hostname) + "): RUN steps keep this hostname",
			Pod: "a seccomp profile that allows sethostname (Unconfined or Localhost)", Laptop: "(containers only)"})
	}
	if miss := e.MissingDefaultCaps(); len(miss) > 0 && plan.Isolation != sandbox.IsolationNone {
		add(Check{Name: "capabilities", Status: "warn", Detail: "RUN steps go without " + strings.Join(miss, ", "),
			Pod: "securityContext.capabilities.add: [" + strings.Join(trimCap(miss), ", ") + "]", Laptop: "(containers only)"})
	}
	switch {
	case h.Snapshotter == "overlay" || h.Snapshotter == "fuse-overlayfs":
		add(Check{Name: "snapshots", Status: "ok", Detail: h.Snapshotter})
	default:
		add(Check{Name: "snapshots", Status: "warn", Detail: "plain copies (slower): " + h.SnapshotterWhy,
			Pod:    "mount an emptyDir volume at the store (" + h.Store.GraphRoot + "); expose /dev/fuse (a fuse device plugin) for fuse-overlayfs",
			Laptop: "apt-get install fuse-overlayfs; a kernel with overlayfs in user namespaces (5.11+)"})
	}
	if strings.HasPrefix(h.Network, "none") {
		add(Check{Name: "RUN network", Status: "warn", Detail: h.Network + "; --network=host shares this one",
			Pod: "expose /dev/net/tun to the container (a device plugin, or hostPath with the right permissions)", Laptop: "apt-get install slirp4netns; chmod 0666 /dev/net/tun"})
	} else {
		add(Check{Name: "RUN network", Status: "ok", Detail: "private (slirp4netns)"})
	}
	binfmt := os.Getenv("BUILDER_BINFMT_MISC")
	if binfmt == "" {
		binfmt = sandbox.DefaultBinfmtDir
	}
	if _, err := os.Stat(binfmt + "/status"); err != nil {
		add(Check{Name: "emulators", Status: "ok", Detail: "cannot be listed here (binfmt_misc is not mounted at " + binfmt + "); the node's handlers serve RUN for other architectures if it has them"})
	} else if len(h.Emulators) == 0 {
		add(Check{Name: "emulators", Status: "warn", Detail: "no binfmt_misc handler with the F flag: RUN for other architectures will fail",
			Pod: "register them on the node (qemu-user-static, binfmt-support), as a DaemonSet does", Laptop: "apt-get install qemu-user-static binfmt-support"})
	} else {
		add(Check{Name: "emulators", Status: "ok", Detail: strings.Join(h.Emulators, ", ")})
	}
	return cs
}

func trimCap(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strings.TrimPrefix(n, "CAP_")
	}
	return out
}
