// Package images is the library entry for the local image store and for
// registries: it opens the containers/storage store that podman and buildah
// share (with their flags and storage.conf), keeps builder's own state
// beside it (blob store, compressed variants, blob-info cache), and lists,
// inspects, tags, removes, pushes and pulls images. The build library and
// the command line both go through it.
package images

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/builder-dev/builder/content"
	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/internal/store"
	"go.podman.io/image/v5/docker"
	"go.podman.io/storage"
)

// StoreOptions select the store, as buildah's and podman's global flags
// do. Empty fields take their value from the user's storage.conf.
type StoreOptions struct {
	Root    string // graph root (--root)
	RunRoot string // run root (--runroot)
	Driver  string // graph driver (--storage-driver)
	// DriverOpts replace storage.conf's driver options (--storage-opt).
	DriverOpts []string
	// Log receives warnings; nil discards them.
	Log *slog.Logger
	// NoIDMapCheck skips the overlay driver's check for idmapped mounts
	// (a process in a new user namespace and mounts, ~8 ms of CPU in a new
	// store) when the store maps no ids: its layers are written the same
	// either way, and a process that never mounts a layer (a build) has no
	// use for the answer. It sets containers/storage's switch for this
	// process (_CONTAINERS_OVERLAY_DISABLE_IDMAP) unless already set.
	NoIDMapCheck bool
}

// Store is an open local store and builder's state beside it
// (<graphroot>/builder). It is safe for concurrent use.
type Store struct {
	s    storage.Store // set when ready is closed, nil if the open failed
	opts StoreOptions
	log  *slog.Logger
	cfg  store.Config

	ready   chan struct{}
	openErr error

	mu    sync.Mutex
	blobs *content.Store
}

// OptionError is an error in what the caller asked for (a bad flag value,
// a malformed reference): the command line reports it as a usage error.
type OptionError struct{ Err error }

func (e *OptionError) Error() string { return e.Err.Error() }
func (e *OptionError) Unwrap() error { return e.Err }

// Optionf makes an OptionError.
func Optionf(format string, a ...any) error { return &OptionError{fmt.Errorf(format, a...)} }

// IsOptionError reports whether err is (or wraps) an OptionError.
func IsOptionError(err error) bool {
	var oe *OptionError
	return errors.As(err, &oe)
}

// IsUserError reports an error about what the user asked for rather than
// builder or the machine: an image or list that does not exist, a name
// that is not a list, credentials a registry refused, an image without
// the platform asked for. The command line exits 1 for them, not 125.
func IsUserError(err error) bool {
	var unauth docker.ErrUnauthorizedForCredentials
	var pe *image.PlatformError
	return errors.Is(err, ErrImageUnknown) || errors.Is(err, store.ErrNotList) ||
		errors.As(err, &unauth) || errors.As(err, &pe)
}

// Open opens the store. Close it when done.
func Open(o StoreOptions) (*Store, error) {
	s, err := OpenBackground(o)
	if err != nil {
		return nil, err
	}
	if err := s.Wait(); err != nil {
		return nil, err
	}
	return s, nil
}

// OpenBackground reads the store's configuration and opens the store in
// the background: a build has work to do before it needs containers/storage,
// whose open (its driver's mount checks in a new store) takes tens of
// milliseconds. Dir, RunDir, Options, Log, Blobs and Registry work at once;
// Wait reports the open's result, and every other method may be called
// only after Wait returned nil. Close it when done, also after a failure.
func OpenBackground(o StoreOptions) (*Store, error) {
	cfg, err := store.Configure(store.Options{Root: o.Root, RunRoot: o.RunRoot, Driver: o.Driver, DriverOpts: o.DriverOpts})
	if err != nil {
		return nil, err
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.NoIDMapCheck && !cfg.MapsIDs() {
		if _, set := os.LookupEnv(noIDMapEnv); !set {
			os.Setenv(noIDMapEnv, "yes")
		}
	}
	s := &Store{opts: o, log: log, cfg: cfg, ready: make(chan struct{})}
	go func() {
		defer close(s.ready)
		st, err := cfg.Open()
		if err != nil {
			s.openErr = err
			return
		}
		if o.Driver == "" && store.ConfiguredDriver() == "" {
			sayAdoptedDriver(st, log)
		}
		s.s = st
	}()
	return s, nil
}

// noIDMapEnv turns the overlay driver's idmapped-mount support off
// (containers/storage reads it at each check).
const noIDMapEnv = "_CONTAINERS_OVERLAY_DISABLE_IDMAP"

// Wait waits for the store's open and reports its error.
func (s *Store) Wait() error {
	<-s.ready
	return s.openErr
}

// Opened is the containers/storage store once open, or the open's error.
func (s *Store) Opened() (storage.Store, error) {
	if err := s.Wait(); err != nil {
		return nil, err
	}
	return s.s, nil
}

// st is the open containers/storage store, for the methods that need it.
func (s *Store) st() storage.Store {
	if err := s.Wait(); err != nil {
		panic(fmt.Sprintf("images: store used although its open failed: %v", err))
	}
	return s.s
}

// Close shuts the store down.
func (s *Store) Close() error {
	if s.Wait() != nil {
		return nil // nothing was opened
	}
	// Shutdown(false) fails while another tool's container (podman's, a
	// buildah working container) has a layer mounted in this shared store;
	// builder mounts none, so that is not its failure.
	if _, err := s.s.Shutdown(false); err != nil && !errors.Is(err, storage.ErrLayerUsedByContainer) {
		return fmt.Errorf("shutting down storage: %w", err)
	}
	return nil
}

// Storage is the containers/storage store itself.
// For a store opened in the background it waits for the open (see
// OpenBackground).
func (s *Store) Storage() storage.Store { return s.st() }

// Options are the options the store was opened with.
func (s *Store) Options() StoreOptions { return s.opts }

// Log is the store's logger.
func (s *Store) Log() *slog.Logger { return s.log }

// Dir is builder's directory name under the graph root (blobs, cache,
// snapshots, tmp, ...).
func (s *Store) Dir(name string) string {
	return filepath.Join(s.cfg.GraphRoot(), "builder", name)
}

// RunDir is builder's directory name under the run root (state that must
// not outlive a boot: secrets, runtime bundles).
func (s *Store) RunDir(name string) string {
	return filepath.Join(s.cfg.RunRoot(), "builder", name)
}

// Blobs is builder's content-addressed blob store beside the store.
func (s *Store) Blobs() (*content.Store, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.blobs == nil {
		b, err := content.OpenStore(s.Dir("blobs"))
		if err != nil {
			return nil, err
		}
		s.blobs = b
	}
	return s.blobs, nil
}

// sayAdoptedDriver says once per store, when no driver was asked for and
// the store's existing one was taken, which it is.
func sayAdoptedDriver(s storage.Store, log *slog.Logger) {
	drv := s.GraphDriverName()
	marker := filepath.Join(s.GraphRoot(), "builder", "driver-"+drv)
	if store.ExistingDriver(s.GraphRoot()) != drv {
		return
	}
	if _, err := os.Stat(marker); err == nil {
		return
	}
	if os.MkdirAll(filepath.Dir(marker), 0o700) == nil && os.WriteFile(marker, nil, 0o600) == nil {
		log.Warn("no storage driver configured: using the one this store already has (set driver in storage.conf to choose)", "driver", drv, "root", s.GraphRoot())
	}
}
