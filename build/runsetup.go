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
}

func setupRun(o *Options, work string) (*runSetup, error) {
	r := &runSetup{secrets: o.Secrets}
	iso := sandbox.IsolationDefault
	if o.Isolation != "" {
		var err error
		if iso, err = sandbox.ParseIsolation(o.Isolation); err != nil {
			return nil, optionf("--isolation: %w", err)
		}
	} else if detected, why := sandbox.DetectIsolation(); detected != sandbox.IsolationDefault {
		iso = detected
		fmt.Fprintf(o.ErrOut, "[Warning] using %s isolation: %s\n", iso, why)
	}
	if o.Runtime != "" {
		iso = sandbox.IsolationOCI
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
	r.sandbox = &sandbox.Sandbox{Isolation: iso, Runtime: o.Runtime, StateDir: state, Log: o.Log}
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
	if name == "" && iso == sandbox.IsolationChroot {
		name = "copy" // chroot isolation is for places where mounting is not allowed
	}
	root := o.Store.Dir("snapshots")
	if name == "" {
		r.snapshots, err = snapshot.Detect(root, o.Log)
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
