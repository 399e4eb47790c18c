// Package store opens the containers/storage store that podman and buildah
// use and implements the image-management operations of the CLI on top of
// it: list, look up (podman's short-name rules), tag, remove, inspect.
package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.podman.io/storage"
)

// Options select the store. Empty fields take their value from the user's
// storage.conf (rootless paths under ~/.local/share/containers for a
// non-root user, /var/lib/containers for root), like podman and buildah.
type Options struct {
	Root    string // graph root (--root)
	RunRoot string // run root (--runroot)
	Driver  string // graph driver (--storage-driver)
	// DriverOpts replace the driver options from storage.conf
	// (--storage-opt). A single empty string clears them.
	DriverOpts []string
}

// ErrImageUnknown is returned (wrapped) when a name or ID matches no image.
// errors.Is(err, storage.ErrImageUnknown) also holds.
var ErrImageUnknown = storage.ErrImageUnknown

// Open opens the store. storage.DefaultStoreOptions reads storage.conf and
// takes the user namespace into account (the process may run inside the
// namespace set up by unshare.MaybeReexecUsingUserNamespace, with
// _CONTAINERS_ROOTLESS_UID set); the flags in o override it. As in podman,
// choosing a driver drops the storage.conf driver options, which belong to
// the configured driver. The caller must Shutdown(false) the store.
func Open(o Options) (storage.Store, error) {
	c, err := Configure(o)
	if err != nil {
		return nil, err
	}
	return c.Open()
}

// Config is a store's resolved configuration: storage.conf with the flags
// applied. Its roots are the absolute paths the opened store reports.
type Config struct{ so storage.StoreOptions }

// Configure resolves o against storage.conf without opening the store.
func Configure(o Options) (Config, error) {
	so, err := storeOptions(o)
	if err != nil {
		return Config{}, err
	}
	// As GetStore does, so that GraphRoot and RunRoot equal the store's.
	if so.GraphRoot, err = filepath.Abs(so.GraphRoot); err == nil {
		so.RunRoot, err = filepath.Abs(so.RunRoot)
	}
	if err != nil {
		return Config{}, fmt.Errorf("storage roots: %w", err)
	}
	return Config{so}, nil
}

// GraphRoot is the store's graph root.
func (c Config) GraphRoot() string { return c.so.GraphRoot }

// RunRoot is the store's run root.
func (c Config) RunRoot() string { return c.so.RunRoot }

// MapsIDs reports whether the store maps layer ids (storage.conf's
// remap-uids, remap-user): its layers are then chowned, or shifted where
// the overlay driver can mount them idmapped.
func (c Config) MapsIDs() bool { return len(c.so.UIDMap) > 0 || len(c.so.GIDMap) > 0 }

// Open opens the store c describes. The caller must Shutdown(false) it.
func (c Config) Open() (storage.Store, error) {
	so := c.so
	s, err := storage.GetStore(so)
	if err != nil {
		return nil, fmt.Errorf("opening storage (root %q, runroot %q, driver %q): %w", so.GraphRoot, so.RunRoot, so.GraphDriverName, err)
	}
	return s, nil
}

func storeOptions(o Options) (storage.StoreOptions, error) {
	so, err := storage.DefaultStoreOptions()
	if err != nil {
		return so, fmt.Errorf("reading storage configuration: %w", err)
	}
	// DefaultStoreOptions is cached and shared: never modify its slices in place.
	so.GraphDriverOptions = append([]string(nil), so.GraphDriverOptions...)
	if o.Root != "" {
		so.GraphRoot = o.Root
	}
	if o.RunRoot != "" {
		so.RunRoot = o.RunRoot
	}
	if o.Driver != "" {
		if o.Driver != so.GraphDriverName {
			so.GraphDriverOptions = nil
		}
		so.GraphDriverName = o.Driver
	}
	if so.GraphDriverName == "" {
		// Nothing configured: the driver the store already has, never a
		// second one beside it (containers/storage then refuses the store:
		// "several valid graphdrivers"), as podman 4.3 creates vfs stores.
		so.GraphDriverName = ExistingDriver(so.GraphRoot)
	}
	if o.Driver == "" && os.Geteuid() != 0 && os.Getenv("_BUILDER_NO_USERNS") != "" {
		// A non-root user without a user namespace (a pod's seccomp
		// refused one) can neither mount nor chown: vfs, keeping files
		// with this user's uid in the store. Layers builder writes keep
		// their real owners: they come from its own tar streams.
		so.GraphDriverName = "vfs"
		so.GraphDriverOptions = []string{"vfs.ignore_chown_errors=true"}
	}
	if singleIDMapped() && (so.GraphDriverName == "overlay" || so.GraphDriverName == "vfs") {
		// One id mapped (newuidmap could not run): the store cannot chown
		// what it extracts, and keeps files with that id, as podman does
		// in this setup. Pushed layers keep their owners: they are
		// builder's own tar streams.
		so.GraphDriverOptions = append(so.GraphDriverOptions, so.GraphDriverName+".ignore_chown_errors=true")
	}
	if len(o.DriverOpts) > 0 {
		if len(o.DriverOpts) == 1 && o.DriverOpts[0] == "" {
			so.GraphDriverOptions = nil
		} else {
			so.GraphDriverOptions = append([]string(nil), o.DriverOpts...)
		}
	}
	if so.GraphRoot == "" || so.RunRoot == "" {
		return so, errors.New("storage configuration names no graph root or run root")
	}
	if so.GraphDriverName == "overlay" && !slices.ContainsFunc(so.GraphDriverOptions, func(o string) bool {
		return strings.Contains(strings.ToLower(o), "skip_mount_home")
	}) {
		// The overlay driver bind-mounts its home on itself to make it a
		// private mount; builder already runs in a mount namespace of its
		// own (the user namespace's, or the private one real root gets at
		// entry). The bind mount would also make the home another mount
		// than builder's snapshot root beside it, and a layer tree the
		// build wrote could not be renamed into the store (EXDEV), only
		// extracted a second time.
		so.GraphDriverOptions = append(so.GraphDriverOptions, "overlay.skip_mount_home=true")
	}
	return so, nil
}

// singleIDMapped reports a user namespace that maps a single uid.
func singleIDMapped() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	f := strings.Fields(lines[0])
	return len(lines) == 1 && len(f) == 3 && f[2] == "1"
}

// ExistingDriver is the graph driver whose layers the store under root
// already holds ("" for a new store, or when several have layers).
func ExistingDriver(root string) string {
	found := ""
	for _, d := range []string{"overlay", "vfs", "btrfs", "zfs", "aufs", "devicemapper"} {
		fi, err := os.Stat(filepath.Join(root, d+"-layers", "layers.json"))
		if err != nil || fi.Size() <= 2 { // "[]": a driver tried once and left empty
			continue
		}
		if found != "" {
			return ""
		}
		found = d
	}
	return found
}

// ConfiguredDriver is the driver storage.conf (or STORAGE_DRIVER) names,
// "" when none.
func ConfiguredDriver() string {
	so, err := storage.DefaultStoreOptions()
	if err != nil {
		return ""
	}
	return so.GraphDriverName
}
