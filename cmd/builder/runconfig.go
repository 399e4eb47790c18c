package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/builder-dev/builder/executor"
	"github.com/builder-dev/builder/executor/sandbox"
	"github.com/builder-dev/builder/snapshot"
)

// runSetup is what RUN needs: a snapshot driver, a sandbox, secrets.
type runSetup struct {
	snapshots snapshot.Driver
	sandbox   *sandbox.Sandbox
	secrets   map[string]executor.Secret
}

func (o *budOptions) runConfig(g *globalOptions, graphRoot, work string) (*runSetup, error) {
	r := &runSetup{secrets: map[string]executor.Secret{}}
	switch o.network {
	case "host", "none":
	case "", "default":
		o.network = "host"
	default:
		return nil, usagef("--network %q: want host or none", o.network)
	}
	for _, s := range o.secrets {
		id, sec, err := parseSecret(s)
		if err != nil {
			return nil, usageError{err}
		}
		r.secrets[id] = sec
	}

	iso := sandbox.IsolationDefault
	if o.isolation != "" {
		var err error
		if iso, err = sandbox.ParseIsolation(o.isolation); err != nil {
			return nil, usageError{fmt.Errorf("--isolation: %w", err)}
		}
	} else if detected, why := sandbox.DetectIsolation(); detected != sandbox.IsolationDefault {
		iso = detected
		fmt.Fprintf(g.stderr, "[Warning] using %s isolation: %s\n", iso, why)
	}
	if o.runtime != "" {
		iso = sandbox.IsolationOCI
	}
	g.log.Info("RUN isolation", "isolation", iso.String())
	state := filepath.Join(work, "sandbox")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, err
	}
	r.sandbox = &sandbox.Sandbox{Isolation: iso, Runtime: o.runtime, StateDir: state, Log: g.log}

	name := o.snapshotter
	if name == "" {
		name = g.snapshotterFromStorage()
	}
	if name == "" && iso == sandbox.IsolationChroot {
		name = "copy" // chroot isolation is for places where mounting is not allowed
	}
	root := filepath.Join(graphRoot, "builder", "snapshots")
	var err error
	if name == "" {
		r.snapshots, err = snapshot.Detect(root, g.log)
	} else {
		r.snapshots, err = snapshot.Open(name, root)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot driver: %w", err)
	}
	g.log.Info("snapshot driver", "driver", r.snapshots.Name())
	return r, nil
}

// snapshotterFromStorage follows --storage-driver (and a fuse-overlayfs
// mount_program) the way buildah users configure storage.
func (g *globalOptions) snapshotterFromStorage() string {
	switch g.storageDriver {
	case "vfs":
		return "copy"
	case "overlay", "overlay2":
		for _, o := range g.storageOpts {
			if strings.Contains(o, "mount_program") && strings.Contains(o, "fuse-overlayfs") {
				return "fuse-overlayfs"
			}
		}
		return "overlay"
	}
	return ""
}

// parseSecret parses --secret id=ID,src=FILE | id=ID,env=VAR (type=file|env allowed).
func parseSecret(s string) (string, executor.Secret, error) {
	var id string
	var sec executor.Secret
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "id":
			id = v
		case "src", "source":
			sec.File = v
		case "env":
			sec.Env = v
		case "type":
			if v != "file" && v != "env" {
				return "", sec, fmt.Errorf("--secret %q: unknown type %q", s, v)
			}
		default:
			return "", sec, fmt.Errorf("--secret %q: unknown key %q", s, k)
		}
	}
	if sec.File == "" && sec.Env == "" {
		sec.Env = id
		if _, ok := os.LookupEnv(id); !ok {
			return "", sec, fmt.Errorf("--secret %q: give src=FILE or env=VAR", s)
		}
	}
	if id == "" {
		if sec.File != "" {
			id = filepath.Base(sec.File)
		} else {
			id = sec.Env
		}
	}
	if sec.File != "" {
		if _, err := os.Stat(sec.File); err != nil {
			return "", sec, fmt.Errorf("--secret %q: %w", s, err)
		}
	}
	return id, sec, nil
}
