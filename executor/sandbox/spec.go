package sandbox

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// SpecOptions describes one RUN.
type SpecOptions struct {
	Rootfs         string   // absolute path of the snapshot's root
	Args           []string // argv; Args[0] is looked up in PATH from Env
	Env            []string // KEY=value; a default PATH is added when missing
	Cwd            string   // absolute path inside the rootfs; "" means "/"
	UID, GID       uint32
	AdditionalGids []uint32
	Hostname       string // "" means DefaultHostname
	// Network: "private" gets a namespace of its own with user-mode
	// networking (slirp4netns), "host" (or "") shares the host's, "none"
	// gets only lo.
	Network string
	// Privileged (RUN --security=insecure, allowed by the user) gives every
	// capability of the sandbox's user namespace and a writable /sys.
	Privileged bool
	// Mounts are extra RUN --mount binds and tmpfs, sources already
	// resolved on the host. They are mounted after the standard ones, in order.
	Mounts []specs.Mount
}

const (
	// DefaultHostname is the RUN's hostname when SpecOptions.Hostname is empty.
	DefaultHostname = "builder"
	// DefaultPath is added to a RUN's environment that has no PATH, as Docker does.
	DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// annotationState names the per-RUN directory under StateDir that holds
	// the generated hosts and resolv.conf; Run removes it when done.
	annotationState = "dev.builder.sandbox.state"
)

// RunDefaults are the user's settings for every RUN of a build: the
// buildah/docker flags --add-host, --no-hosts, -v, --ulimit, --shm-size,
// --cap-add and --cap-drop.
type RunDefaults struct {
	ExtraHosts []string // "name:ip", added to the RUN's /etc/hosts
	NoHosts    bool     // leave the image's /etc/hosts alone
	Volumes    []specs.Mount
	Ulimits    []specs.POSIXRlimit
	ShmSize    int64 // bytes of /dev/shm (0: 64 MiB)
	CapAdd     []string
	CapDrop    []string // "ALL" drops every one
}

// capName0 is a capability name in canonical form (CAP_ prefix, upper case).
func capName0(n string) string {
	n = strings.ToUpper(n)
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	return n
}

func appendNew(l []string, s string) []string {
	if slices.Contains(l, s) {
		return l
	}
	return append(l, s)
}

// defaultCaps is Docker's default capability set, the one a RUN gets as root.
func defaultCaps() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
		"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
	}
}

// Spec returns the runtime spec for one RUN: the process with NoNewPrivileges
// and Docker's default capabilities (none for a non-root user), new PID,
// mount, UTS and IPC namespaces (and network for "none"), and mounts for
// /proc, /dev (a tmpfs; the runtime adds null, zero, full, random, urandom,
// tty and the fd links, as the runtime spec's default devices), /dev/pts,
// /dev/shm, /sys read-only, /etc/hosts and /etc/resolv.conf, then o.Mounts.
// It writes the RUN's hosts and resolv.conf into a fresh directory under
// StateDir (named in the spec's annotations); Run removes that directory,
// so a spec is for one Run.
func (s *Sandbox) Spec(o SpecOptions) (*specs.Spec, error) {
	if !filepath.IsAbs(o.Rootfs) {
		return nil, fmt.Errorf("sandbox spec: rootfs %q is not absolute", o.Rootfs)
	}
	if fi, err := os.Stat(o.Rootfs); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("sandbox spec: rootfs %q is not a directory", o.Rootfs)
	}
	if len(o.Args) == 0 || o.Args[0] == "" {
		return nil, fmt.Errorf("sandbox spec: no command")
	}
	cwd := o.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if !path.IsAbs(cwd) {
		return nil, fmt.Errorf("sandbox spec: working directory %q is not absolute", cwd)
	}
	var newNet, private bool
	switch o.Network {
	case "", NetworkHost:
	case NetworkNone:
		newNet = true
	case NetworkPrivate:
		newNet, private = true, true
	default:
		return nil, fmt.Errorf("sandbox spec: network %q not supported (want private, host or none)", o.Network)
	}
	if s.StateDir == "" {
		return nil, fmt.Errorf("sandbox spec: no StateDir")
	}
	host := o.Hostname
	if host == "" {
		host = DefaultHostname
	}
	env := append([]string(nil), o.Env...)
	if !hasEnv(env, "PATH") {
		env = append(env, "PATH="+DefaultPath)
	}

	caps := &specs.LinuxCapabilities{Bounding: defaultCaps()}
	if o.UID == 0 {
		caps.Effective, caps.Permitted = defaultCaps(), defaultCaps()
	}
	sp := &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: filepath.Clean(o.Rootfs)},
		Hostname: host,
		Process: &specs.Process{
			Args: append([]string(nil), o.Args...),
			Env:  env,
			Cwd:  path.Clean(cwd),
			User: specs.User{UID: o.UID, GID: o.GID,
				AdditionalGids: append([]uint32(nil), o.AdditionalGids...)},
			NoNewPrivileges: true,
			Capabilities:    caps,
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.MountNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.IPCNamespace},
			},
			MaskedPaths:   maskedPaths(),
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
	if newNet {
		sp.Linux.Namespaces = append(sp.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	}
	if o.Privileged {
		// --security=insecure, allowed by the user: every capability of the
		// sandbox's user namespace, nothing masked, /sys writable.
		all := heldCaps()
		sp.Process.Capabilities = &specs.LinuxCapabilities{Bounding: all, Effective: all, Permitted: all}
		sp.Process.NoNewPrivileges = false
		sp.Linux.MaskedPaths, sp.Linux.ReadonlyPaths = nil, nil
	}

	dir, err := os.MkdirTemp(s.StateDir, "run-")
	if err != nil {
		return nil, fmt.Errorf("sandbox spec: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("sandbox spec: %w", err)
	}
	hostsPath, resolvPath := filepath.Join(dir, "hosts"), filepath.Join(dir, "resolv.conf")
	hostResolv, _ := os.ReadFile("/etc/resolv.conf") // none: the RUN gets an empty one
	hostHosts, _ := os.ReadFile("/etc/hosts")
	resolv := resolvConf(hostResolv, newNet)
	if private {
		resolv = privateResolvConf(hostResolv)
	}
	hosts := hostsFile(hostHosts, host)
	for _, h := range s.Defaults.ExtraHosts {
		name, ip, _ := strings.Cut(h, ":")
		hosts = append(hosts, []byte(ip+"\t"+name+"\n")...)
	}
	if err := os.WriteFile(hostsPath, hosts, 0o644); err == nil {
		err = os.WriteFile(resolvPath, resolv, 0o644)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("sandbox spec: %w", err)
	}
	sp.Annotations = map[string]string{annotationState: dir}
	if private {
		sp.Annotations[annotationNetwork] = NetworkPrivate
	}
	sp.Mounts = standardMounts(newNet, gidMapped(5), o.Privileged)
	if d := s.Defaults.ShmSize; d > 0 {
		for i := range sp.Mounts {
			if sp.Mounts[i].Destination == "/dev/shm" {
				sp.Mounts[i].Options = append(slices.DeleteFunc(slices.Clone(sp.Mounts[i].Options),
					func(o string) bool { return strings.HasPrefix(o, "size=") }), fmt.Sprintf("size=%d", d))
			}
		}
	}
	fileOpts := []string{"bind", "nosuid", "nodev", "noexec"}
	if !s.Defaults.NoHosts {
		sp.Mounts = append(sp.Mounts, specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: hostsPath, Options: fileOpts})
	}
	sp.Mounts = append(sp.Mounts, specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: resolvPath, Options: fileOpts})
	sp.Mounts = append(sp.Mounts, s.Defaults.Volumes...)
	sp.Mounts = append(sp.Mounts, o.Mounts...)
	sp.Process.Rlimits = slices.Clone(s.Defaults.Ulimits)
	if !o.Privileged {
		c := sp.Process.Capabilities
		for _, add := range s.Defaults.CapAdd {
			add = capName0(add)
			c.Bounding = appendNew(c.Bounding, add)
			if o.UID == 0 {
				c.Effective, c.Permitted = appendNew(c.Effective, add), appendNew(c.Permitted, add)
			}
		}
		for _, drop := range s.Defaults.CapDrop {
			drop = capName0(drop)
			rm := func(l []string) []string {
				return slices.DeleteFunc(l, func(n string) bool { return drop == "CAP_ALL" || n == drop })
			}
			c.Bounding, c.Effective, c.Permitted = rm(c.Bounding), rm(c.Effective), rm(c.Permitted)
		}
	}
	return sp, nil
}

func standardMounts(newNet, gid5, privileged bool) []specs.Mount {
	pts := []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}
	if gid5 {
		pts = append(pts, "gid=5") // the tty group, when this user namespace maps it
	}
	sysOpts := []string{"nosuid", "noexec", "nodev", "ro"}
	if privileged {
		sysOpts = sysOpts[:3]
	}
	sys := specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: sysOpts}
	if !newNet && inUserNS() {
		// sysfs may only be mounted by the owner of the network namespace;
		// sharing the host's from a user namespace means binding it.
		sys = specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys",
			Options: append([]string{"rbind"}, sysOpts...)}
	}
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: pts},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		sys,
	}
}

// defaultDevices are the device nodes the runtime spec says every runtime
// supplies without being asked ("Default Devices"); the spec lists none,
// because runc 1.1 then drops their cgroup allow rules.
func defaultDevices() []string {
	return []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"}
}

// maskedPaths are Docker's: kernel interfaces a build has no business reading.
func maskedPaths() []string {
	return []string{"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
		"/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"}
}

// hostsFile keeps the host's entries for other machines, drops its
// loopback lines (they name the host) and adds localhost and the RUN's
// hostname.
func hostsFile(host []byte, hostname string) []byte {
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	sc := bufio.NewScanner(bytes.NewReader(host))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if a, err := netip.ParseAddr(f[0]); err == nil && a.IsLoopback() {
			continue
		}
		b.WriteString(strings.Join(f, "\t") + "\n")
	}
	if hostname != "localhost" {
		fmt.Fprintf(&b, "127.0.0.1\t%s\n", hostname)
	}
	return b.Bytes()
}

// resolvConf copies the host's resolv.conf; with its own network
// namespace the RUN's loopback is not the host's, so loopback nameservers
// (systemd-resolved's 127.0.0.53, dnsmasq) are dropped.
// privateResolvConf is the host's search and options lines with
// slirp4netns's DNS forwarder as the nameserver.
func privateResolvConf(host []byte) []byte {
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(host))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 && f[0] != "nameserver" {
			b.WriteString(sc.Text() + "\n")
		}
	}
	b.WriteString("nameserver " + privateDNS + "\n")
	return b.Bytes()
}

func resolvConf(host []byte, dropLoopback bool) []byte {
	if !dropLoopback {
		return host
	}
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(host))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(strings.SplitN(f[1], "%", 2)[0]); err == nil && a.IsLoopback() {
				continue
			}
		}
		b.WriteString(sc.Text() + "\n")
	}
	return b.Bytes()
}

func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, key+"=") {
			return true
		}
	}
	return false
}

// lookupEnv returns the last value of key in env, as a shell would see it.
func lookupEnv(env []string, key string) (string, bool) {
	v, ok := "", false
	for _, kv := range env {
		if k, val, found := strings.Cut(kv, "="); found && k == key {
			v, ok = val, true
		}
	}
	return v, ok
}

// inUserNS reports whether this process runs in a user namespace other
// than the initial one (whose map covers all 2^32 ids).
func inUserNS() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
}

// gidMapped reports whether gid exists in this process's user namespace.
func gidMapped(gid uint64) bool {
	b, err := os.ReadFile("/proc/self/gid_map")
	if err != nil {
		return true
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var in, out, n uint64
		if _, err := fmt.Sscan(sc.Text(), &in, &out, &n); err == nil && gid >= in && gid < in+n {
			return true
		}
	}
	return false
}
