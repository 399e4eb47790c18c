package build

// What RUN needs: the isolation (detected, or forced by the options), the
// sandbox, the snapshot driver that works with it, and the secrets.

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/builder-dev/builder/executor/sandbox"
	"github.com/builder-dev/builder/snapshot"
	"github.com/docker/go-units"
	"github.com/opencontainers/runtime-spec/specs-go"
)

type runSetup struct {
	snapshots snapshot.Driver
	sandbox   *sandbox.Sandbox
	secrets   map[string]Secret
	// secretsDir is the build's private tmpfs ("" where there is none).
	secretsDir string
	network    string // what RUN steps get by default
	cleanup    func()
	plan       sandbox.Plan       // the isolation chosen and its fallbacks (choose)
	forced     *sandbox.Isolation // --isolation, --runtime
	idNote     string             // a single-id mapping, for failing RUNs
	ssh        map[string]string
}

func setupRun(o *Options, work string) (*runSetup, error) {
	r := &runSetup{secrets: o.Secrets}
	if o.Isolation != "" {
		iso, err := sandbox.ParseIsolation(o.Isolation)
		if err != nil {
			return nil, optionf("--isolation: %w", err)
		}
		r.forced = &iso
	}
	if o.Runtime != "" {
		oci := sandbox.IsolationOCI
		r.forced = &oci
	}
	r.idNote = singleIDNote()
	// The sandbox's state (OCI bundles with the RUN's environment,
	// secrets included) and secret files go on a private tmpfs.
	mem, cleanup, err := privateTmpfs(o.Store.RunDir("tmp"), o.Log)
	if err != nil {
		return nil, err
	}
	r.secretsDir, r.cleanup = mem, cleanup
	state := filepath.Join(work, "sandbox")
	if mem != "" {
		state = filepath.Join(mem, "sandbox")
	} else if o.Runtime != "" {
		cleanup()
		return nil, fmt.Errorf("--runtime %s: no tmpfs for the bundle, which would hold secrets on disk (builder could not mount one, and the run root %s is not on tmpfs)", o.Runtime, o.Store.RunDir("tmp"))
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		cleanup()
		return nil, err
	}
	defaults, err := runDefaults(o)
	if err != nil {
		cleanup()
		return nil, err
	}
	if r.ssh, err = sshAgents(o.SSH); err != nil {
		cleanup()
		return nil, err
	}
	// The isolation and what it lacks come with choose.
	r.sandbox = &sandbox.Sandbox{Runtime: o.Runtime, StateDir: state, Log: o.Log, Defaults: defaults}
	r.cleanup = func() { r.sandbox.Close(); cleanup() }
	r.network = o.Network
	if r.network == sandbox.NetworkPrivate {
		// Without user-mode networking the safe step down is no network,
		// said once; sharing the host's is the user's call.
		why := ""
		if err := sandbox.PrivateNetwork(); err != nil {
			why = err.Error()
		} else if o.Runtime != "" { // the OCI isolation, or none at all
			why = "--runtime hands RUN to another runtime"
		}
		if why != "" {
			r.network = sandbox.NetworkNone
			fmt.Fprintf(o.ErrOut, "[Warning] RUN steps get no network: the private network needs slirp4netns and /dev/net/tun, and %s. --network=host shares the host's network (an explicit choice)\n", why)
		}
	}

	name := o.Snapshotter
	if name == "" {
		so := o.Store.Options()
		name = snapshotterFromStorage(so.Driver, so.DriverOpts)
	}
	root := o.Store.Dir("snapshots")
	if name == "" {
		// Whatever works here, in any isolation: kernel overlay (also on a
		// volume in a pod), fuse-overlayfs with /dev/fuse, copies.
		var why string
		if r.snapshots, why, err = snapshot.DetectWhy(root, o.Log); err == nil && why != "" {
			fmt.Fprintf(o.ErrOut, "[Warning] snapshots are plain copies (slower): %s\n", why)
		}
	} else {
		r.snapshots, err = snapshot.Open(name, root)
	}
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("snapshot driver: %w", err)
	}
	o.Log.Info("snapshot driver", "driver", r.snapshots.Name())
	return r, nil
}

// choose waits for the isolation probe (Prepare started it) and gives the
// sandbox the strongest isolation that works here, each step down said
// once; a forced one that cannot work is an error, never a silent step
// down. The build's stages wait for it (session.openGate).
func (r *runSetup) choose(o *Options) error {
	plan, err := sandbox.Probe().Choose(r.forced)
	if err != nil {
		return &Failure{err}
	}
	for _, d := range plan.Downgrades {
		fmt.Fprintf(o.ErrOut, "[Warning] %s\n", d)
	}
	iso := plan.Isolation
	r.plan = plan
	if r.idNote != "" && iso != sandbox.IsolationNone {
		fmt.Fprintf(o.ErrOut, "[Warning] %s; files keep their owners in layers all the same\n", r.idNote)
	}
	o.Log.Info("RUN isolation", "isolation", iso.String())
	sb := r.sandbox
	sb.Isolation, sb.ProcBind, sb.NoHostname, sb.NoMounts, sb.Missing = iso, plan.ProcBind, plan.NoHostname, plan.NoMounts, plan.Missing
	return nil
}

// snapshotterFromStorage follows --storage-driver (and a fuse-overlayfs
// mount_program) the way buildah users configure storage.
func snapshotterFromStorage(driver string, opts []string) string {
	switch driver {
	case "vfs":
		return "copy"
	case "overlay", "overlay2":
		for _, o := range opts {
			if strings.Contains(o, "mount_program") && strings.Contains(o, "fuse-overlayfs") {
				return "fuse-overlayfs"
			}
		}
		return "overlay"
	}
	return ""
}

// ulimitNames are docker's --ulimit names.
var ulimitNames = map[string]string{
	"as": "RLIMIT_AS", "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA", "fsize": "RLIMIT_FSIZE",
	"locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK", "msgqueue": "RLIMIT_MSGQUEUE", "nice": "RLIMIT_NICE",
	"nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO",
	"rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK",
}

// runDefaults checks and converts the RUN flags of o.
func runDefaults(o *Options) (sandbox.RunDefaults, error) {
	d := sandbox.RunDefaults{NoHosts: o.NoHosts}
	for _, h := range o.AddHosts {
		name, ip, ok := strings.Cut(h, ":")
		if !ok || name == "" || net.ParseIP(ip) == nil {
			return d, optionf("--add-host %q: want NAME:IP", h)
		}
		d.ExtraHosts = append(d.ExtraHosts, h)
	}
	for _, v := range o.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || !strings.HasPrefix(parts[1], "/") {
			return d, optionf("-v %q: want HOST-DIR:CONTAINER-DIR[:OPTIONS]", v)
		}
		src, err := filepath.Abs(parts[0])
		if err != nil {
			return d, optionf("-v %q: %v", v, err)
		}
		if _, err := os.Stat(src); err != nil {
			return d, optionf("-v %q: %v", v, err)
		}
		opts := []string{"rbind"}
		if len(parts) == 3 {
			for _, op := range strings.Split(parts[2], ",") {
				switch op {
				case "ro", "rw":
					opts = append(opts, op)
				case "z", "Z", "O", "U", "":
					// SELinux relabels, overlay and chown options: nothing to do here.
				default:
					return d, optionf("-v %q: unknown option %q (want ro or rw)", v, op)
				}
			}
		}
		d.Volumes = append(d.Volumes, specs.Mount{Destination: filepath.Clean(parts[1]), Type: "bind", Source: src, Options: opts})
	}
	for _, u := range o.Ulimits {
		name, lim, ok := strings.Cut(u, "=")
		typ, known := ulimitNames[strings.ToLower(name)]
		if !ok || !known {
			return d, optionf("--ulimit %q: want NAME=SOFT[:HARD], NAME one of nofile, nproc, core, memlock, stack, ...", u)
		}
		softS, hardS, hasHard := strings.Cut(lim, ":")
		soft, err := parseLimit(softS)
		hard := soft
		if err == nil && hasHard {
			hard, err = parseLimit(hardS)
		}
		if err != nil || soft > hard {
			return d, optionf("--ulimit %q: want SOFT[:HARD] numbers (or -1 for unlimited), soft not above hard", u)
		}
		d.Ulimits = append(d.Ulimits, specs.POSIXRlimit{Type: typ, Soft: soft, Hard: hard})
	}
	if o.ShmSize != "" {
		n, err := units.RAMInBytes(o.ShmSize)
		if err != nil || n <= 0 {
			return d, optionf("--shm-size %q: want a size such as 128m", o.ShmSize)
		}
		d.ShmSize = n
	}
	for _, c := range append(slices.Clone(o.CapAdd), o.CapDrop...) {
		if !sandbox.KnownCapability(c) && !(strings.EqualFold(c, "ALL") && slices.Contains(o.CapDrop, c)) {
			return d, optionf("unknown capability %q", c)
		}
	}
	d.CapAdd, d.CapDrop = o.CapAdd, o.CapDrop
	return d, nil
}

func parseLimit(s string) (uint64, error) {
	if s == "-1" || s == "unlimited" {
		return ^uint64(0), nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// sshAgents resolves --ssh values to agent sockets by id.
func sshAgents(values []string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range values {
		id, sock, ok := strings.Cut(v, "=")
		if !ok {
			sock = os.Getenv("SSH_AUTH_SOCK")
			if sock == "" {
				return nil, optionf("--ssh %s: SSH_AUTH_SOCK is not set (start an agent, or give --ssh %s=SOCKET)", id, id)
			}
		}
		fi, err := os.Stat(sock)
		if err != nil || fi.Mode()&os.ModeSocket == 0 {
			return nil, optionf("--ssh %s: %s is not an agent socket (keys are forwarded through ssh-agent: ssh-add them there)", v, sock)
		}
		out[id] = sock
	}
	return out, nil
}
