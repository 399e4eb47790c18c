package sandbox

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// capNames lists capabilities by number, as <linux/capability.h> does.
func capNames() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
		"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
		"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
		"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
		"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
		"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
		"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
		"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
		"CAP_CHECKPOINT_RESTORE",
	}
}

// capMask turns capability names into a 64-bit mask; unknown names are
// an error, so a typo does not silently grant or drop nothing.
func capMask(names []string) (uint64, error) {
	all := capNames()
	var m uint64
	for _, n := range names {
		i := indexOf(all, strings.ToUpper(n))
		if i < 0 {
			return 0, fmt.Errorf("unknown capability %q", n)
		}
		m |= 1 << uint(i)
	}
	return m, nil
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// lastCap is the highest capability this kernel knows.
func lastCap() int {
	n, err := strconv.Atoi(readTrim("/proc/sys/kernel/cap_last_cap"))
	if err != nil {
		return len(capNames()) - 1
	}
	return n
}

// setCredentials switches the locked thread to the RUN's user and
// capabilities: bounding set first (dropping needs CAP_SETPCAP), then
// groups and ids (setuid to non-root clears the rest), then the
// remaining sets, ambient, no_new_privs and the parent-death signal,
// which a uid change clears. In chroot isolation CAP_SYS_CHROOT is always
// dropped: with it, root can leave a chroot.
func setCredentials(p *specs.Process, chroot, noSetgroups bool) *wireError {
	caps := p.Capabilities
	if caps == nil {
		caps = &specs.LinuxCapabilities{}
	}
	masks := make([]uint64, 5)
	for i, names := range [][]string{caps.Bounding, caps.Effective, caps.Permitted, caps.Inheritable, caps.Ambient} {
		m, err := capMask(names)
		if err != nil {
			return fail(codeSetup, "capabilities", "", err)
		}
		if chroot {
			m &^= 1 << unix.CAP_SYS_CHROOT
		}
		masks[i] = m
	}
	// Only what this process can give: a pod's bounding set may lack some
	// of Docker's defaults (the build said so once, before any RUN).
	held := grantable()
	for i := range masks {
		masks[i] &= held
	}
	bounding, effective, permitted, inheritable, ambient := masks[0], masks[1], masks[2], masks[3], masks[4]
	last := lastCap()
	for c := 0; c <= last && c < 64; c++ {
		if bounding&(1<<uint(c)) == 0 {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
				return fail(codeSetup, "dropping capability", capName(c), err)
			}
		}
	}
	gids := make([]int, 0, len(p.User.AdditionalGids))
	onlyPrimary := true // nothing asked for beyond the primary group
	for _, g := range p.User.AdditionalGids {
		gids = append(gids, int(g))
		onlyPrimary = onlyPrimary && g == p.User.GID
	}
	if err := unix.Setgroups(gids); err != nil {
		// Where the namespace forbids setgroups (a single-id mapping), a
		// list of at most the primary group is harmless to leave unset.
		if !(errors.Is(err, unix.EPERM) && onlyPrimary && noSetgroups) {
			return fail(codeSetup, "setgroups", fmt.Sprint(gids), err)
		}
	}
	if err := unix.Setresgid(int(p.User.GID), int(p.User.GID), int(p.User.GID)); err != nil {
		return fail(codeSetup, "setgid", strconv.Itoa(int(p.User.GID)), err)
	}
	if p.User.UID != 0 && permitted != 0 {
		// Keep the permitted set over the switch away from uid 0.
		if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
			return fail(codeSetup, "keepcaps", "", err)
		}
	}
	if err := unix.Setresuid(int(p.User.UID), int(p.User.UID), int(p.User.UID)); err != nil {
		return fail(codeSetup, "setuid", strconv.Itoa(int(p.User.UID)), err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(effective), Permitted: uint32(permitted), Inheritable: uint32(inheritable)},
		{Effective: uint32(effective >> 32), Permitted: uint32(permitted >> 32), Inheritable: uint32(inheritable >> 32)},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fail(codeSetup, "capset", "", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fail(codeSetup, "clearing ambient capabilities", "", err)
	}
	for c := 0; c < 64; c++ {
		if ambient&(1<<uint(c)) != 0 {
			if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0); err != nil {
				return fail(codeSetup, "raising ambient capability", capName(c), err)
			}
		}
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fail(codeSetup, "no_new_privs", "", err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fail(codeSetup, "parent-death signal", "", err)
	}
	return nil
}

// grantable is the mask of capabilities this thread can hand on: in its
// bounding set and its permitted set.
func grantable() uint64 {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return ^uint64(0)
	}
	perm := uint64(data[0].Permitted) | uint64(data[1].Permitted)<<32
	var bnd uint64
	for c := 0; c <= lastCap() && c < 64; c++ {
		if r, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0); err == nil && r == 1 {
			bnd |= 1 << uint(c)
		}
	}
	return perm & bnd
}

func capName(c int) string {
	if n := capNames(); c < len(n) {
		return n[c]
	}
	return "CAP_" + strconv.Itoa(c)
}

// haveCap reports whether this thread has capability c in its effective set.
func haveCap(c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[c/32].Effective&(1<<uint(c%32)) != 0
}

// heldCaps names the capabilities this process holds (permitted): all a
// privileged RUN can be given, whatever the kernel knows beyond them.
func heldCaps() []string {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return defaultCaps()
	}
	var out []string
	for i, n := range capNames() {
		if i <= lastCap() && data[i/32].Permitted&(1<<uint(i%32)) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// KnownCapability reports whether name (with or without CAP_) is a
// capability this package knows.
func KnownCapability(name string) bool {
	return indexOf(capNames(), capName0(name)) >= 0
}
