package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

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
	var lvl slog.Level
	switch strings.ToLower(g.logLevel) {
	case "debug", "trace":
		lvl = slog.LevelDebug
	case "info":
		lvl = slog.LevelInfo
	case "warn", "warning", "":
		lvl = slog.LevelWarn
	case "error", "fatal", "panic":
		lvl = slog.LevelError
	default:
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
	setLibraryLogLevel(lvl)
	return nil
}

func isCobraUsage(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "unknown command") || strings.HasPrefix(s, "unknown flag") ||
		strings.Contains(s, "accepts ") || strings.Contains(s, "requires at least") ||
		strings.Contains(s, "requires at most") || strings.HasPrefix(s, "invalid argument")
}

var _ = fmt.Sprintf
