package build

// What RUN needs: the isolation (detected, or forced by the options), the
// sandbox, the snapshot driver that works with it, and the secrets.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/builder-dev/builder/executor/sandbox"
	"github.com/builder-dev/builder/snapshot"
)

type runSetup struct {
	snapshots snapshot.Driver
	sandbox   *sandbox.Sandbox
	secrets   map[string]Secret
	// secretsDir is the build's private tmpfs ("" where there is none).
	secretsDir string
	network    string // what RUN steps get by default
	cleanup    func()
	plan       sandbox.Plan // the isolation chosen and its fallbacks
	idNote     string       // a single-id mapping, for failing RUNs
}

func setupRun(o *Options, work string) (*runSetup, error) {
	r := &runSetup{secrets: o.Secrets}
	var forced *sandbox.Isolation
	if o.Isolation != "" {
		iso, err := sandbox.ParseIsolation(o.Isolation)
		if err != nil {
			return nil, optionf("--isolation: %w", err)
		}
		forced = &iso
	}
	if o.Runtime != "" {
		oci := sandbox.IsolationOCI
		forced = &oci
	}
	// What this process may do, tried once: the strongest isolation that
	// works, each step down said once; a forced one that cannot work is an
	// error, never a silent step down.
	plan, err := sandbox.Probe().Choose(forced)
	if err != nil {
		return nil, &Failure{err}
	}
	for _, d := range plan.Downgrades {
		fmt.Fprintf(o.ErrOut, "[Warning] %s\n", d)
	}
	iso := plan.Isolation
	r.plan = plan
	if r.idNote = singleIDNote(); r.idNote != "" && iso != sandbox.IsolationNone {
		fmt.Fprintf(o.ErrOut, "[Warning] %s; files keep their owners in layers all the same\n", r.idNote)
	}
	o.Log.Info("RUN isolation", "isolation", iso.String())
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
	r.sandbox = &sandbox.Sandbox{Isolation: iso, Runtime: o.Runtime, StateDir: state, Log: o.Log,
		ProcBind: plan.ProcBind, NoHostname: plan.NoHostname, NoMounts: plan.NoMounts, Missing: plan.Missing}
	r.cleanup = func() { r.sandbox.Close(); cleanup() }
	r.network = o.Network
	if r.network == sandbox.NetworkPrivate {
		// Without user-mode networking the safe step down is no network,
		// said once; sharing the host's is the user's call.
		why := ""
		if err := sandbox.PrivateNetwork(); err != nil {
			why = err.Error()
		} else if iso == sandbox.IsolationOCI {
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
