package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

func lookPath(bin string) (string, error) { return exec.LookPath(bin) }

// mountFuse runs fuse-overlayfs, which mounts and then daemonizes; upper "" mounts read-only.
func (d *overlayDriver) mountFuse(ctx context.Context, lowers []string, upper, work, target string) error {
	opts := "lowerdir=" + strings.Join(lowers, ":")
	if upper != "" {
		opts += ",upperdir=" + upper + ",workdir=" + work
	}
	// A file, not a pipe, for its output: the daemon might keep an inherited pipe open forever.
	logf, err := os.CreateTemp(filepath.Dir(target), "fuse-log-")
	if err != nil {
		return err
	}
	defer os.Remove(logf.Name())
	defer logf.Close()
	cmd := exec.CommandContext(ctx, d.fuseBin, "-o", opts, target)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logf.Name())
		return fmt.Errorf("%s -o %s %s: %w: %s", d.fuseBin, opts, target, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// fuserUnmount unmounts a fuse mount this process may not unmount itself.
func fuserUnmount(target string) error {
	var errs []error
	for _, bin := range []string{"fusermount3", "fusermount"} {
		out, err := exec.Command(bin, "-u", target).CombinedOutput()
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s -u %s: %w: %s", bin, target, err, strings.TrimSpace(string(out))))
	}
	return errors.Join(errs...)
}

// normalizeUpper rewrites an unmounted fuse-overlayfs upper dir into the layer store format:
// ".wh.NAME" files become 0/0 devices, ".wh..wh..opq" files and fuse-overlayfs's own opaque xattrs
// become <prefix>opaque. Directory times are restored after their entries change, so the tree
// still matches the tar Diff wrote. Where mknod or the xattr is refused, the file form stays.
func normalizeUpper(ctx context.Context, upper, prefix string) error {
	fd, err := unix.Open(upper, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return normalizeDir(ctx, fd, prefix)
}

func normalizeDir(ctx context.Context, fd int, prefix string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var self unix.Stat_t
	if err := unix.Fstat(fd, &self); err != nil {
		return err
	}
	names, err := readDirNames(fd)
	if err != nil {
		return err
	}
	opaque, changed := false, false
	for _, x := range opaqueXattrs {
		if v, err := getXattr(fd, x); err == nil && string(v) == "y" {
			opaque = true
			if x != prefix+"opaque" {
				unix.Fremovexattr(fd, x) // best effort: never read from the store
			}
		}
	}
	if err := stripFuseXattrs(fd, ""); err != nil {
		return err
	}
	for _, n := range names {
		if n == whiteoutOpaque {
			opaque = true
		}
	}
	for _, n := range names {
		st, err := lstatAt(fd, n)
		if err != nil {
			return err
		}
		switch {
		case n == whiteoutOpaque:
			// replaced by the xattr below
		case n == whiteoutPrefix+".opq" && isWhiteoutDev(&st) && opaque:
			// fuse-overlayfs's whiteout companion of the marker: redundant with the xattr
			if err := unix.Unlinkat(fd, n, 0); err != nil {
				return err
			}
			changed = true
		case strings.HasPrefix(n, whiteoutPrefix) && !strings.HasPrefix(n, whiteoutMetaPrefix) && st.Mode&unix.S_IFMT == unix.S_IFREG:
			if _, err := lstatAt(fd, n[len(whiteoutPrefix):]); err == nil {
				break
			}
			err := unix.Mknodat(fd, n[len(whiteoutPrefix):], unix.S_IFCHR, 0)
			if errors.Is(err, unix.EPERM) {
				break // keep the file form
			}
			if err == nil {
				err = unix.Unlinkat(fd, n, 0)
			}
			if err != nil {
				return err
			}
			changed = true
		case st.Mode&unix.S_IFMT == unix.S_IFREG:
			if err := stripFuseXattrs(fd, n); err != nil {
				return err
			}
		case isDir(&st):
			sub, err := openDirAt(fd, n)
			if err != nil {
				return err
			}
			err = normalizeDir(ctx, sub, prefix)
			unix.Close(sub)
			if err != nil {
				return err
			}
		}
	}
	if opaque {
		err := unix.Fsetxattr(fd, prefix+"opaque", []byte("y"), 0)
		if err == nil {
			if err = removeAllAt(fd, whiteoutOpaque); err != nil {
				return err
			}
			changed = true
		} else if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("set opaque xattr: %w", err)
		}
	}
	if changed {
		return futimens(fd, &[2]unix.Timespec{self.Atim, self.Mtim})
	}
	return nil
}

// fuseXattrPrefix names fuse-overlayfs's bookkeeping (origin of a copy-up...). The kernel would
// show it as content of a layer, so it goes before the upper dir joins the store.
const fuseXattrPrefix = "user.fuseoverlayfs."

// stripFuseXattrs removes fuse-overlayfs's xattrs from dirfd's entry name ("" for dirfd itself).
// It goes by path, through /proc/self/fd, which needs no permission to open the file.
func stripFuseXattrs(dirfd int, name string) error {
	p := "/proc/self/fd/" + strconv.Itoa(dirfd)
	if name != "" {
		p += "/" + name
	}
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		return nil // no xattr support: nothing to strip
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil
	}
	for _, x := range splitNul(buf[:sz]) {
		if strings.HasPrefix(x, fuseXattrPrefix) {
			if err := unix.Lremovexattr(p, x); err != nil && !errors.Is(err, unix.ENODATA) {
				return fmt.Errorf("%s: remove xattr %s: %w", name, x, err)
			}
		}
	}
	return nil
}
