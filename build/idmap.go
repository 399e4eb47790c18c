package build

// The id mapping a rootless build runs under, and why it is a single id
// when it is: containers/storage falls back to mapping only the user when
// newuidmap cannot run, and then every chown to another id fails with a
// bare EINVAL. Said once, before the build, with the reason and the fix.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strings"

	"github.com/builder-dev/builder/executor/sandbox"
	"golang.org/x/sys/unix"
)

// singleIDNote is "" when the build has a range of ids to chown to (or is
// real root); otherwise what a failing RUN should say about it.
func singleIDNote() string {
	e := sandbox.Self() // not the whole probe: setupRun does not wait for it
	if !e.InUserNS || e.MappedIDs != 1 {
		return ""
	}
	return "only one uid is mapped in builder's user namespace (" + singleIDWhy() + "): chown to another id fails with EINVAL"
}

// singleIDWhy says why newuidmap did not map a range.
func singleIDWhy() string {
	if sandbox.Self().NoNewPrivs {
		return "no_new_privs is set (Kubernetes allowPrivilegeEscalation: false, podman --security-opt no-new-privileges), so newuidmap's file capabilities or setuid bit do not apply"
	}
	path, err := exec.LookPath("newuidmap")
	if err != nil {
		return "newuidmap is not installed (Debian: apt-get install uidmap)"
	}
	name := os.Getenv("USER")
	if u, err := user.LookupId(fmt.Sprint(os.Getenv("_CONTAINERS_ROOTLESS_UID"))); err == nil {
		name = u.Username
	}
	if name != "" && !hasSubIDs("/etc/subuid", name) {
		return fmt.Sprintf("/etc/subuid has no range for %s: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s", name, name)
	}
	var st unix.Stat_t
	if unix.Stat(path, &st) == nil && st.Mode&unix.S_ISUID == 0 {
		if _, err := unix.Getxattr(path, "security.capability", nil); err != nil {
			return path + " has neither the setuid bit nor file capabilities: setcap cap_setuid+ep " + path
		}
	}
	if !sandbox.BoundingHas(unix.CAP_SETUID) {
		return "the capability bounding set lacks CAP_SETUID, which newuidmap needs"
	}
	return "newuidmap failed; --log-level debug shows its error"
}

// hasSubIDs reports whether file has a line for name.
func hasSubIDs(file, name string) bool {
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if n, _, ok := strings.Cut(sc.Text(), ":"); ok && n == name {
			return true
		}
	}
	return false
}
