package snapshot

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// attrs is the metadata Apply, CopyTree and Merge give a created entry.
type attrs struct {
	mode     uint32 // permission bits plus setuid/setgid/sticky
	uid, gid int    // already mapped through MapOwner
	times    [2]unix.Timespec
	xattrs   []xattr
}

// setter applies attrs with ApplyOptions' error policy. Order matters: chown clears setuid/setgid
// and file capabilities, so it goes first, then the mode, then xattrs, then times.
type setter struct{ opts *ApplyOptions }

func (s setter) owner(uid, gid int) (int, int) {
	if s.opts.MapOwner != nil {
		return s.opts.MapOwner(uid, gid)
	}
	return uid, gid
}

func (s setter) chownErr(err error) error {
	if err == nil || (s.opts.IgnoreChownErrors && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL))) {
		return nil
	}
	return fmt.Errorf("chown: %w", err)
}

// xattrErr tolerates, when asked, what unprivileged or xattr-less filesystems refuse. It covers every
// namespace, not only user.*: trusted.* always fails in a user namespace.
func (s setter) xattrErr(name string, err error) error {
	if err == nil || (s.opts.IgnoreXattrErrors && (errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM))) {
		return nil
	}
	return fmt.Errorf("set xattr %s: %w", name, err)
}

// applyFd sets everything on an open regular file or directory.
func (s setter) applyFd(fd int, a *attrs, setTimes bool) error {
	if !s.opts.NoChown {
		if err := s.chownErr(retry(func() error { return unix.Fchown(fd, a.uid, a.gid) })); err != nil {
			return err
		}
	}
	if err := retry(func() error { return unix.Fchmod(fd, a.mode) }); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	for _, x := range a.xattrs {
		if err := s.xattrErr(x.name, unix.Fsetxattr(fd, x.name, x.value, 0)); err != nil {
			return err
		}
	}
	if setTimes {
		if err := futimens(fd, &a.times); err != nil {
			return fmt.Errorf("set times: %w", err)
		}
	}
	return nil
}

// applyAt sets owner, mode and times on a node under dirfd that cannot be opened for writing
// (symlink, device, fifo). Symlinks have no mode of their own.
func (s setter) applyAt(dirfd int, name string, a *attrs, symlink bool) error {
	// Devices and fifos cannot hold user.* xattrs and symlinks none we keep: no xattrs here.
	if !s.opts.NoChown {
		err := retry(func() error { return unix.Fchownat(dirfd, name, a.uid, a.gid, unix.AT_SYMLINK_NOFOLLOW) })
		if err := s.chownErr(err); err != nil {
			return err
		}
	}
	if !symlink {
		// The node was just created by us as a non-symlink, so following is moot.
		if err := retry(func() error { return unix.Fchmodat(dirfd, name, a.mode, 0) }); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	if err := utimesAt(dirfd, name, &a.times); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// mknod creates a device node or fifo. skipped reports a device left out under SkipDevices.
func (s setter) mknod(dirfd int, name string, mode uint32, dev uint64) (skipped bool, err error) {
	if s.opts.ForHost && mode&unix.S_IFMT != unix.S_IFIFO {
		return true, nil
	}
	err = retry(func() error { return unix.Mknodat(dirfd, name, mode, int(dev)) })
	if errors.Is(err, unix.EPERM) && mode&unix.S_IFMT != unix.S_IFIFO {
		if s.opts.SkipDevices {
			return true, nil
		}
		return false, fmt.Errorf("mknod: %w (device nodes need CAP_MKNOD in the initial user namespace; set SkipDevices to leave them out)", err)
	}
	if err != nil {
		return false, fmt.Errorf("mknod: %w", err)
	}
	return false, nil
}

// createFile writes content into a new file name under dirfd and applies a. When name exists,
// replace (if not nil) must remove it; the file is never opened in place, since it may be a hard link
// shared with other paths, or a symlink.
func (s setter) createFile(dirfd int, name string, a *attrs, replace func() error, write func(fd int) error) error {
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL
	fd, err := openAt(dirfd, name, flags, 0o600)
	if errors.Is(err, unix.EEXIST) && replace != nil {
		if err = replace(); err == nil {
			fd, err = openAt(dirfd, name, flags, 0o600)
		}
	}
	if err != nil {
		return err
	}
	err = write(fd)
	if err == nil {
		err = s.applyFd(fd, a, true)
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

func timespec(sec, nsec int64) unix.Timespec { return unix.Timespec{Sec: sec, Nsec: nsec} }
