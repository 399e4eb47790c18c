package build

// The process entry: re-exec handlers, the user namespace a rootless
// builder works in, and the log level of the libraries underneath.

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/builder-dev/builder/executor/sandbox"
	"github.com/sirupsen/logrus"
	"go.podman.io/storage/pkg/reexec"
	"go.podman.io/storage/pkg/unshare"
	"golang.org/x/sys/unix"
)

// Init runs first in main. It dispatches the re-exec handlers of
// containers/storage and of the RUN sandbox (which re-execute this binary
// for work in another namespace) and exits when this process was one. The
// sandbox gets its small helper program (appended to this binary by make
// build), which it re-executes instead of this binary where it can.
func Init() {
	sandbox.UseHelper(sandbox.ExeHelper)
	if reexec.Init() {
		os.Exit(0)
	}
}

// EnterUserNamespace re-executes a non-root user inside a user namespace
// with the /etc/subuid and /etc/subgid ranges mapped, as buildah and
// podman do (in the child, _CONTAINERS_ROOTLESS_UID is set and storage
// picks the user's paths); real root goes into a mount namespace of its
// own instead. Only commands that use the store need it.
func EnterUserNamespace(args []string) {
	if os.Geteuid() != 0 && os.Getenv("_CONTAINERS_USERNS_CONFIGURED") == "" {
		ensureRuntimeDir()
	}
	if os.Geteuid() != 0 && os.Getenv(noUserNSMarker) == "" && os.Getenv("_CONTAINERS_USERNS_CONFIGURED") == "" {
		// containers/storage would die on a refused unshare(CLONE_NEWUSER)
		// (a pod's seccomp profile): ask first, and carry on without one.
		err := sandbox.UserNamespaceError()
		if err == nil && !sandbox.BoundingHas(unix.CAP_SYS_CHROOT) && !sandbox.BoundingHas(unix.CAP_SYS_ADMIN) {
			// Capabilities dropped (a restricted pod): a user namespace
			// would hold no privilege, and the store could not unpack in it.
			err = errors.New("the capability bounding set lacks CAP_SYS_ADMIN and CAP_SYS_CHROOT, so a user namespace would give no privilege")
		}
		if err != nil {
			os.Setenv(noUserNSMarker, err.Error())
			fmt.Fprintf(os.Stderr, "[Warning] no user namespace here (unshare(CLONE_NEWUSER): %v; Kubernetes' RuntimeDefault seccomp profile refuses it to non-root pods): the store uses vfs and keeps files with uid %d; RUN needs a user namespace or chroot (builder doctor says what would allow them)\n", err, os.Geteuid())
			return
		}
	}
	if os.Getenv(noUserNSMarker) != "" {
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
	const marker = mountNSMarker
	switch os.Getenv(marker) {
	case "unavailable":
		return
	case "":
	default:
		// Mounts made here must not propagate back to the host: without
		// that, going on would put snapshot mounts in the host's table.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			fmt.Fprintf(os.Stderr, "Error: cannot make builder's mount namespace private: %v\n", err)
			os.Exit(125)
		}
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

// noUserNSMarker holds why no user namespace could be made (set by
// EnterUserNamespace; read by the build to say what that costs).
const noUserNSMarker = "_BUILDER_NO_USERNS"

// NoUserNamespace says why this process runs without the user namespace a
// non-root builder normally enters ("" when it has one, or is root).
func NoUserNamespace() string { return os.Getenv(noUserNSMarker) }

// storeless reports a process whose local store cannot take layers: not
// root and no user namespace (containers/storage must chown what it
// extracts). Bases are then read from their registries directly and the
// image goes only to --push and --output destinations.
func storeless() bool { return os.Geteuid() != 0 && NoUserNamespace() != "" }

// mountNSMarker is set to "1" in the process that re-executed into its
// own mount namespace, "unavailable" where that was not allowed.
const mountNSMarker = "_BUILDER_MOUNTNS"

// SetLibraryLogLevel sets the level of logrus, through which
// containers/storage and containers/image log.
func SetLibraryLogLevel(lvl slog.Level) {
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

// ensureRuntimeDir gives a non-root user without XDG_RUNTIME_DIR (su,
// runuser, cron) one, as buildah does: inside the user namespace builder
// is uid 0, and containers/image would otherwise look for credentials in
// root's /run/containers/0/auth.json, and abort every pull on EACCES when
// root has one. /run/user/UID when the user owns it, else a private
// directory under the temp dir.
func ensureRuntimeDir() {
	if os.Getenv("XDG_RUNTIME_DIR") != "" {
		return
	}
	uid := os.Geteuid()
	owned := func(dir string) bool {
		var st unix.Stat_t
		return unix.Lstat(dir, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR && int(st.Uid) == uid && st.Mode&0o077 == 0
	}
	dir := fmt.Sprintf("/run/user/%d", uid)
	if !owned(dir) {
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("builder-run-%d", uid))
		if err := os.Mkdir(dir, 0o700); err != nil && !os.IsExist(err) {
			return
		}
		if !owned(dir) {
			return // taken by someone else: leave the defaults
		}
	}
	os.Setenv("XDG_RUNTIME_DIR", dir)
}
