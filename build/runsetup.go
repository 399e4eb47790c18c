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
	state := filepath.Join(work, "sandbox")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, err
	}
	r.sandbox = &sandbox.Sandbox{Isolation: iso, Runtime: o.Runtime, StateDir: state, Log: o.Log}

	name := o.Snapshotter
	if name == "" {
		so := o.Store.Options()
		name = snapshotterFromStorage(so.Driver, so.DriverOpts)
	}
	if name == "" && iso == sandbox.IsolationChroot {
		name = "copy" // chroot isolation is for places where mounting is not allowed
	}
	root := o.Store.Dir("snapshots")
	var err error
	if name == "" {
		r.snapshots, err = snapshot.Detect(root, o.Log)
	} else {
		r.snapshots, err = snapshot.Open(name, root)
	}
	if err != nil {
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
