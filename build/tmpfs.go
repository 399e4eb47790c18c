package build

// Secrets and runtime bundles (which hold a RUN's environment, secrets
// included) live only in memory: a tmpfs builder mounts in its own mount
// namespace, so it is gone with the process however it ends, kill -9 too.

import (
	"log/slog"
	"os"

	"github.com/builder-dev/builder/snapshot"
	"golang.org/x/sys/unix"
)

// privateTmpfs makes a scratch directory under parent and puts a tmpfs of
// its own on it. Where mounting is not allowed it keeps the directory if
// parent is on tmpfs already (the run root usually is); otherwise dir is
// "" and nothing secret may be written. cleanup unmounts and removes it.
func privateTmpfs(parent string, log *slog.Logger) (dir string, cleanup func(), err error) {
	dir, err = snapshot.NewScratchDir(parent, "build-", log)
	if err != nil {
		return "", func() {}, err
	}
	remove := func() { os.RemoveAll(dir) }
	if inPrivateMountNS() {
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700,size=256m"); err == nil {
			return dir, func() { unix.Unmount(dir, unix.MNT_DETACH); remove() }, nil
		}
	}
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) == nil && st.Type == unix.TMPFS_MAGIC {
		return dir, remove, nil
	}
	log.Debug("no tmpfs for secrets and runtime bundles", "dir", dir)
	return "", remove, nil
}

// inPrivateMountNS reports whether builder runs in a mount namespace of
// its own (rootless: the user namespace's; root: the one it re-executed
// into), where a mount cannot outlive the process or reach the host.
func inPrivateMountNS() bool {
	if os.Getenv("_CONTAINERS_USERNS_CONFIGURED") != "" {
		return true
	}
	return os.Getenv(mountNSMarker) == "1"
}
