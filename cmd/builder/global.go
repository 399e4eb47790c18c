package main

import (
	"io"
	"log/slog"
	"strings"

	"github.com/builder-dev/builder/build"
	"github.com/builder-dev/builder/images"
	"github.com/spf13/cobra"
)

// globalOptions are the buildah/podman-compatible global flags plus the
// process's standard streams.
type globalOptions struct {
	root          string // --root: storage graph root ("" = storage.conf default)
	runroot       string // --runroot
	storageDriver string // --storage-driver
	storageOpts   []string
	logLevel      string // --log-level

	stdin          io.Reader
	stdout, stderr io.Writer
	log            *slog.Logger
}

func (g *globalOptions) addFlags(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&g.root, "root", "", "storage root dir (default from storage.conf)")
	f.StringVar(&g.runroot, "runroot", "", "storage state dir (default from storage.conf)")
	f.StringVar(&g.storageDriver, "storage-driver", "", "storage driver (default from storage.conf)")
	f.StringArrayVar(&g.storageOpts, "storage-opt", nil, "storage driver option")
	f.StringVar(&g.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
}

func (g *globalOptions) setup() error {
	lvl, ok := parseLogLevel(g.logLevel)
	if !ok {
		return usagef("--log-level: unknown level %q", g.logLevel)
	}
	g.log = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: lvl,
		// Users read these lines: no timestamps.
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		}}))
	build.SetLibraryLogLevel(lvl)
	return nil
}

// parseLogLevel reads a --log-level value ("" is the default, warn).
func parseLogLevel(s string) (slog.Level, bool) {
	switch strings.ToLower(s) {
	case "trace":
		return slog.LevelDebug - 4, true
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn", "warning", "":
		return slog.LevelWarn, true
	case "error", "fatal", "panic":
		return slog.LevelError, true
	}
	return 0, false
}

// openStore opens the store the global flags select. Close it when done.
func (g *globalOptions) openStore() (*images.Store, error) {
	return images.Open(g.storeOptions())
}

func (g *globalOptions) storeOptions() images.StoreOptions {
	return images.StoreOptions{
		Root: g.root, RunRoot: g.runroot, Driver: g.storageDriver, DriverOpts: g.storageOpts, Log: g.log,
	}
}

// withStore opens the store, runs fn with it and closes the store,
// reporting a close failure only when fn succeeded.
func (g *globalOptions) withStore(fn func(*images.Store) error) error {
	s, err := g.openStore()
	if err != nil {
		return err
	}
	return closeAfter(s, fn)
}

// withStoreBackground is withStore for a build: fn starts while the store
// opens (images.OpenBackground; build.Run waits for it where it must).
func (g *globalOptions) withStoreBackground(fn func(*images.Store) error) error {
	o := g.storeOptions()
	o.NoIDMapCheck = true // a build mounts none of the store's layers
	s, err := images.OpenBackground(o)
	if err != nil {
		return err
	}
	return closeAfter(s, fn)
}

func closeAfter(s *images.Store, fn func(*images.Store) error) (err error) {
	defer func() {
		if cerr := s.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	return fn(s)
}

func isCobraUsage(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "unknown command") || strings.HasPrefix(s, "unknown flag") ||
		strings.Contains(s, "accepts ") || strings.Contains(s, "requires at least") ||
		strings.Contains(s, "requires at most") || strings.HasPrefix(s, "invalid argument")
}
