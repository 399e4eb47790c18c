package main

import (
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sirupsen/logrus"
	"go.podman.io/storage/pkg/reexec"
	"go.podman.io/storage/pkg/unshare"
)

// noStoreCommands are the subcommands that never touch the store, so they
// run without entering a user namespace.
var noStoreCommands = map[string]bool{
	"version": true, "help": true, "completion": true, "login": true, "logout": true,
	"__complete": true, "__completeNoDesc": true,
}

// globalValueFlags are the root's flags that take a separate value.
var globalValueFlags = map[string]bool{
	"--root": true, "--runroot": true, "--storage-driver": true,
	"--storage-opt": true, "--log-level": true,
}

// maybeReexec runs first in main. It dispatches containers/storage's
// re-exec handlers (storage re-executes this binary to apply layers and
// mount overlays), then, for subcommands that use the store, re-executes a
// non-root user inside a user namespace with the /etc/subuid and
// /etc/subgid ranges mapped, as buildah and podman do. In the child,
// _CONTAINERS_ROOTLESS_UID is set and storage picks the user's paths.
func maybeReexec(args []string) {
	if reexec.Init() {
		os.Exit(0)
	}
	// Until the flags are parsed, honour --log-level for what the
	// namespace setup logs (e.g. missing subordinate ID ranges).
	if lvl, ok := logLevelArg(args[1:]); ok {
		setLibraryLogLevel(lvl)
	} else {
		setLibraryLogLevel(slog.LevelWarn)
	}
	if !needsStore(args[1:]) {
		return
	}
	unshare.MaybeReexecUsingUserNamespace(false)
	if os.Geteuid() == 0 && unshare.GetRootlessUID() <= 0 {
		privateMountNamespace(args)
	}
}

// privateMountNamespace re-executes real root in a mount namespace of its
// own, so the snapshot mounts of a build never show up on (or leak into)
// the host's mount table and vanish with the process, even on kill -9.
// Where a new mount namespace is not allowed (a Kubernetes pod without
// CAP_SYS_ADMIN), it carries on in the host's namespace: such builds use
// chroot isolation and the copy snapshot driver, which mount nothing.
func privateMountNamespace(args []string) {
	const marker = "_BUILDER_MOUNTNS"
	if os.Getenv(marker) != "" {
		// Mounts made here must not propagate back to the host.
		_ = unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "")
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	cmd := exec.Command(exe, args[1:]...)
	cmd.Args[0] = args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), marker+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		os.Setenv(marker, "unavailable")
		return
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		os.Exit(ee.ExitCode())
	}
	if err != nil {
		os.Exit(125)
	}
	os.Exit(0)
}

// needsStore reports whether the command line runs a subcommand that uses
// the store; help requests and the commands in noStoreCommands do not.
func needsStore(args []string) bool {
	sub := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if a == "-h" || a == "--help" {
			return false
		}
		if strings.HasPrefix(a, "-") {
			if globalValueFlags[a] && sub == "" {
				i++ // skip the flag's value
			}
			continue
		}
		if sub == "" {
			sub = a
		}
	}
	return sub != "" && !noStoreCommands[sub]
}

// logLevelArg finds --log-level in args.
func logLevelArg(args []string) (slog.Level, bool) {
	for i, a := range args {
		var v string
		switch {
		case a == "--":
			return 0, false
		case a == "--log-level" && i+1 < len(args):
			v = args[i+1]
		case strings.HasPrefix(a, "--log-level="):
			v = strings.TrimPrefix(a, "--log-level=")
		default:
			continue
		}
		switch strings.ToLower(v) {
		case "trace":
			return slog.LevelDebug - 4, true
		case "debug":
			return slog.LevelDebug, true
		case "info":
			return slog.LevelInfo, true
		case "warn", "warning":
			return slog.LevelWarn, true
		case "error", "fatal", "panic":
			return slog.LevelError, true
		}
		return 0, false
	}
	return 0, false
}

// setLibraryLogLevel sets the level of logrus, through which
// containers/storage and containers/image log.
func setLibraryLogLevel(lvl slog.Level) {
	switch {
	case lvl < slog.LevelDebug:
		logrus.SetLevel(logrus.TraceLevel)
	case lvl < slog.LevelInfo:
		logrus.SetLevel(logrus.DebugLevel)
	case lvl < slog.LevelWarn:
		logrus.SetLevel(logrus.InfoLevel)
	case lvl < slog.LevelError:
		logrus.SetLevel(logrus.WarnLevel)
	default:
		logrus.SetLevel(logrus.ErrorLevel)
	}
}
