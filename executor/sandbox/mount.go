package sandbox

import (
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// secureJoin resolves p inside root, symlinks included, never leaving root.
func secureJoin(root, p string) (string, error) {
	return securejoin.SecureJoin(root, p)
}

func isBind(m specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}

// mountOptions is a spec mount's options split for mount(2).
type mountOptions struct {
	flags     uintptr // MS_* for the mount itself
	propagate uintptr // MS_PRIVATE, MS_SLAVE, ... applied afterwards
	recursive bool    // rbind
	data      []string
}

func parseOptions(opts []string) mountOptions {
	var o mountOptions
	set := map[string]uintptr{
		"ro": unix.MS_RDONLY, "nosuid": unix.MS_NOSUID, "nodev": unix.MS_NODEV,
		"noexec": unix.MS_NOEXEC, "sync": unix.MS_SYNCHRONOUS, "dirsync": unix.MS_DIRSYNC,
		"noatime": unix.MS_NOATIME, "nodiratime": unix.MS_NODIRATIME,
		"relatime": unix.MS_RELATIME, "strictatime": unix.MS_STRICTATIME,
	}
	clear := map[string]uintptr{
		"rw": unix.MS_RDONLY, "suid": unix.MS_NOSUID, "dev": unix.MS_NODEV, "exec": unix.MS_NOEXEC,
		"atime": unix.MS_NOATIME, "diratime": unix.MS_NODIRATIME, "norelatime": unix.MS_RELATIME,
	}
	prop := map[string]uintptr{
		"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
		"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
		"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
		"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
	}
	for _, s := range opts {
		switch {
		case s == "bind":
		case s == "rbind":
			o.recursive = true
		case set[s] != 0:
			o.flags |= set[s]
		case clear[s] != 0:
			o.flags &^= clear[s]
		case prop[s] != 0:
			o.propagate = prop[s]
		default:
			o.data = append(o.data, s)
		}
	}
	return o
}

// mount makes one spec mount under the rootfs. Its mountpoint exists
// (Run made it) unless it lies in an earlier mount of ours, where it is
// made now: never in the rootfs itself.
func (c *child) mount(m specs.Mount) *wireError {
	dest := path.Clean("/" + m.Destination)
	full, err := secureJoin(c.root, dest)
	if err != nil {
		return fail(codeSetup, "resolving mountpoint", dest, err)
	}
	bind := isBind(m)
	if _, err := os.Lstat(full); errors.Is(err, os.ErrNotExist) {
		inOurs := false
		for _, d := range c.mounted {
			inOurs = inOurs || under(dest, d)
		}
		if !inOurs {
			return fail(codeSetup, "mountpoint missing in rootfs", dest, err)
		}
		if err := makeMountpoint(full, m, bind); err != nil {
			return fail(codeSetup, "creating mountpoint", dest, err)
		}
	}
	o := parseOptions(m.Options)
	if bind {
		err = bindMount(m.Source, full, o)
	} else {
		err = unix.Mount(m.Source, full, m.Type, o.flags, strings.Join(o.data, ","))
		if err != nil && m.Type == "devpts" && errors.Is(err, unix.EINVAL) {
			// gid=5 is refused when the tty group is not mapped here.
			o.data = dropPrefixed(o.data, "gid=")
			err = unix.Mount(m.Source, full, m.Type, o.flags, strings.Join(o.data, ","))
		}
		if err != nil && m.Type == "proc" && (c.cfg.Chroot || c.cfg.ProcBind) {
			// Without a PID namespace of our own, or under a container's
			// masked /proc, a new proc cannot be mounted; the existing one
			// can still be bound (its masks included).
			err = bindMount("/proc", full, mountOptions{flags: o.flags, recursive: true})
		}
		if err != nil && m.Type == "sysfs" {
			// Only the network namespace's owner may mount sysfs; bind the
			// host's instead, read-only.
			err = bindMount("/sys", full, mountOptions{flags: o.flags, recursive: true})
		}
	}
	if err == nil && o.propagate != 0 {
		err = unix.Mount("", full, "", o.propagate, "")
	}
	if err != nil {
		return fail(codeSetup, "mounting "+m.Type+" on", dest, err)
	}
	c.mounted = append(c.mounted, dest)
	if dest == "/dev" && m.Type == "tmpfs" {
		c.devTmp = true
	}
	return nil
}

func makeMountpoint(full string, m specs.Mount, bind bool) error {
	if bind {
		if fi, err := os.Stat(m.Source); err == nil && !fi.IsDir() {
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(full, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			return f.Close()
		}
	}
	return os.MkdirAll(full, 0o755)
}

func dropPrefixed(list []string, prefix string) []string {
	var out []string
	for _, s := range list {
		if !strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

// bindMount binds src on dest, then applies the flags that a bind mount
// ignores on creation (ro, nosuid, ...) with a remount.
func bindMount(src, dest string, o mountOptions) error {
	flags := uintptr(unix.MS_BIND)
	if o.recursive {
		flags |= unix.MS_REC
	}
	if err := unix.Mount(src, dest, "", flags, ""); err != nil {
		return err
	}
	rest := o.flags &^ (unix.MS_BIND | unix.MS_REC)
	if rest == 0 {
		return nil
	}
	if err := remount(dest, rest); err != nil {
		return err
	}
	if rest&unix.MS_RDONLY != 0 && o.recursive {
		return makeReadonly(dest, true)
	}
	return nil
}

// remount changes a bind mount's flags. In a user namespace the flags the
// mount already has (nosuid, nodev, noexec, atime) are locked and must be
// kept, so they are read back and added.
func remount(dest string, flags uintptr) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dest, &st); err != nil {
		return err
	}
	locked := map[int64]uintptr{
		unix.ST_NOSUID: unix.MS_NOSUID, unix.ST_NODEV: unix.MS_NODEV, unix.ST_NOEXEC: unix.MS_NOEXEC,
		unix.ST_NOATIME: unix.MS_NOATIME, unix.ST_NODIRATIME: unix.MS_NODIRATIME, unix.ST_RELATIME: unix.MS_RELATIME,
		unix.ST_RDONLY: unix.MS_RDONLY,
	}
	for st1, ms := range locked {
		if st.Flags&st1 != 0 {
			flags |= ms
		}
	}
	return unix.Mount("", dest, "", unix.MS_BIND|unix.MS_REMOUNT|flags, "")
}

// makeReadonly makes dest (and, when recursive, everything mounted below
// it) read-only; mount_setattr(2) leaves the locked flags alone.
func makeReadonly(dest string, recursive bool) error {
	var at uint
	if recursive {
		at = unix.AT_RECURSIVE
	}
	err := unix.MountSetattr(-1, dest, at, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY})
	if errors.Is(err, unix.ENOSYS) {
		return remount(dest, unix.MS_RDONLY)
	}
	return err
}

// populateDev binds the host's device nodes, the default ones and those
// the spec lists (mknod is not allowed in a user namespace), onto empty
// files in our /dev tmpfs, and adds the usual symlinks.
func (c *child) populateDev() *wireError {
	if !c.devTmp {
		return nil
	}
	devs := defaultDevices()
	if c.spec.Linux != nil {
		for _, d := range c.spec.Linux.Devices {
			devs = append(devs, d.Path)
		}
	}
	for _, d := range devs {
		full, err := secureJoin(c.root, d)
		if err != nil || !under(path.Clean(d), "/dev") {
			continue
		}
		if _, err := os.Stat(d); err != nil {
			continue // the host lacks it: so does the RUN
		}
		if _, err := os.Lstat(full); err == nil {
			continue // listed twice
		}
		if err := makeMountpoint(full, specs.Mount{Source: d}, true); err != nil {
			return fail(codeSetup, "creating device", d, err)
		}
		if err := unix.Mount(d, full, "", unix.MS_BIND, ""); err != nil {
			if c.cfg.Chroot {
				c.skipped = append(c.skipped, d)
				continue
			}
			return fail(codeSetup, "binding device", d, err)
		}
	}
	// Our tmpfs, where it was mounted: never a path through the image's
	// symlinks (an image's /dev pointing at a host directory made these
	// links there before).
	dev, err := secureJoin(c.root, "/dev")
	if err != nil {
		return fail(codeSetup, "resolving", "/dev", err)
	}
	links := [][2]string{{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"}, {"/proc/kcore", "core"}}
	for _, l := range links {
		err := os.Symlink(l[0], filepath.Join(dev, l[1]))
		if err != nil && !errors.Is(err, os.ErrExist) {
			return fail(codeSetup, "creating /dev/"+l[1], "", err)
		}
	}
	return nil
}

// maskPaths hides spec.Linux.MaskedPaths (a read-only empty tmpfs over a
// directory, /dev/null over a file) and makes ReadonlyPaths read-only.
// Paths are inside root; missing ones are skipped.
func (c *child) maskPaths(root string) {
	if c.spec.Linux == nil {
		return
	}
	for _, p := range c.spec.Linux.MaskedPaths {
		full, err := secureJoin(root, p)
		if err != nil {
			continue
		}
		fi, err := os.Stat(full)
		if err != nil {
			continue
		}
		if fi.IsDir() {
			err = unix.Mount("tmpfs", full, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0")
		} else {
			var null string
			if null, err = secureJoin(root, "/dev/null"); err == nil {
				err = unix.Mount(null, full, "", unix.MS_BIND, "")
			}
		}
		if err != nil && c.cfg.Chroot {
			c.skipped = append(c.skipped, "mask "+p)
		}
	}
	for _, p := range c.spec.Linux.ReadonlyPaths {
		full, err := secureJoin(root, p)
		if err != nil {
			continue
		}
		if _, err := os.Stat(full); err != nil {
			continue
		}
		if err := unix.Mount(full, full, "", unix.MS_BIND|unix.MS_REC, ""); err == nil {
			err = makeReadonly(full, true)
			if err != nil && c.cfg.Chroot {
				c.skipped = append(c.skipped, "read-only "+p)
			}
		}
	}
}
