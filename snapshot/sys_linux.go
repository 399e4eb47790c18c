package snapshot

import (
	"errors"
	"io"
	"slices"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// All file work here goes through raw descriptors and *at system calls: one fstatat per entry, no
// path re-walks, and no *os.File (whose NewFile costs an fcntl and whose finalizer we do not need).

// copyBufSize is large enough that big files move in few system calls.
const copyBufSize = 256 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }

// retry repeats a system call interrupted by a signal (Go's runtime signals make EINTR real).
func retry(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}

func lstatAt(dirfd int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := retry(func() error { return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) })
	return st, err
}

// openAt opens name under dirfd without following a final symlink.
func openAt(dirfd int, name string, flags int, mode uint32) (int, error) {
	var fd int
	err := retry(func() (err error) {
		fd, err = unix.Openat(dirfd, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
		return err
	})
	return fd, err
}

func openDirAt(dirfd int, name string) (int, error) {
	return openAt(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
}

// readDirNames lists a directory opened for reading, without "." and "..".
func readDirNames(fd int) ([]string, error) {
	bp := getBuf()
	defer putBuf(bp)
	buf := (*bp)[:64<<10]
	var names []string
	for {
		var n int
		err := retry(func() (err error) { n, err = unix.Getdents(fd, buf); return err })
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		for b := buf[:n]; len(b) > 0; {
			consumed, _, more := unix.ParseDirent(b, -1, names)
			names = more
			b = b[consumed:]
		}
	}
}

// isDirType etc. test the file type bits of a stat mode.
func isDir(st *unix.Stat_t) bool  { return st.Mode&unix.S_IFMT == unix.S_IFDIR }
func isLink(st *unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFLNK }

// fdReader and fdWriter adapt a raw descriptor; neither has ReadFrom/WriteTo, so io.CopyBuffer
// really uses the pooled buffer instead of allocating its own.
type fdReader int

func (f fdReader) Read(p []byte) (int, error) {
	var n int
	err := retry(func() (err error) { n, err = unix.Read(int(f), p); return err })
	if err != nil {
		return 0, err
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

type fdWriter int

func (f fdWriter) Write(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		var n int
		err := retry(func() (err error) { n, err = unix.Write(int(f), p[written:]); return err })
		if err != nil {
			return written, err
		}
		written += n
	}
	return written, nil
}

func readlinkAt(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// futimens sets the times of an open descriptor; a NULL path is the portable futimens form.
func futimens(fd int, ts *[2]unix.Timespec) error {
	return retry(func() error {
		_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
		if e != 0 {
			return e
		}
		return nil
	})
}

func utimesAt(dirfd int, name string, ts *[2]unix.Timespec) error {
	return retry(func() error { return unix.UtimesNanoAt(dirfd, name, ts[:], unix.AT_SYMLINK_NOFOLLOW) })
}

type xattr struct {
	name  string
	value []byte
}

// listXattrs returns the names of an open descriptor's xattrs. Filesystems without xattrs give none.
func listXattrs(fd int) ([]string, error) {
	var buf []byte
	for {
		size, err := unix.Flistxattr(fd, nil)
		if err != nil {
			if errors.Is(err, unix.ENOTSUP) {
				return nil, nil
			}
			return nil, err
		}
		if size == 0 {
			return nil, nil
		}
		buf = slices.Grow(buf[:0], size)[:size]
		n, err := unix.Flistxattr(fd, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew in between
		}
		if err != nil {
			return nil, err
		}
		return splitNul(buf[:n]), nil
	}
}

func splitNul(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != 0 {
			i++
		}
		if i > 0 {
			out = append(out, string(b[:i]))
		}
		if i < len(b) {
			i++
		}
		b = b[i:]
	}
	return out
}

// getXattr reads one xattr; a missing attribute is (nil, ENODATA).
func getXattr(fd int, name string) ([]byte, error) {
	for {
		size, err := unix.Fgetxattr(fd, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, size)
		n, err := unix.Fgetxattr(fd, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// readXattrs returns the xattrs of fd that keep() accepts, sorted by name.
func readXattrs(fd int, keep func(string) bool) ([]xattr, error) {
	names, err := listXattrs(fd)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	slices.Sort(names)
	var out []xattr
	for _, name := range names {
		if !keep(name) {
			continue
		}
		v, err := getXattr(fd, name)
		if errors.Is(err, unix.ENODATA) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, xattr{name, v})
	}
	return out, nil
}

// removeAllAt removes name under dirfd and, for a directory, everything below it. It never follows
// symlinks: each level is opened O_NOFOLLOW relative to its parent descriptor.
func removeAllAt(dirfd int, name string) error {
	err := retry(func() error { return unix.Unlinkat(dirfd, name, 0) })
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	fd, oerr := openDirAt(dirfd, name)
	if oerr != nil {
		if errors.Is(oerr, unix.ENOTDIR) || errors.Is(oerr, unix.ELOOP) {
			return err // it was not a directory after all: report the unlink failure
		}
		return oerr
	}
	names, err := readDirNames(fd)
	if err == nil {
		for _, n := range names {
			if err = removeAllAt(fd, n); err != nil {
				break
			}
		}
	}
	unix.Close(fd)
	if err != nil {
		return err
	}
	err = retry(func() error { return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR) })
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// copyData moves size bytes (or to EOF when size < 0) from src to dst: a reflink when the filesystem
// shares extents, else copy_file_range in the kernel, else read/write through a pooled buffer.
func copyData(dst, src int, size int64) error {
	if size != 0 && unix.IoctlFileClone(dst, src) == nil {
		return nil
	}
	var done int64
	for size < 0 || done < size {
		chunk := 1 << 30
		if size >= 0 && size-done < int64(chunk) {
			chunk = int(size - done)
		}
		n, err := unix.CopyFileRange(src, nil, dst, nil, chunk, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if done == 0 {
				break // unsupported here (EXDEV, ENOSYS, EINVAL on special filesystems): fall back
			}
			return err
		}
		if n == 0 {
			return nil
		}
		done += int64(n)
	}
	if size >= 0 && done >= size {
		return nil
	}
	bp := getBuf()
	defer putBuf(bp)
	_, err := io.CopyBuffer(fdWriter(dst), fdReader(src), *bp)
	return err
}
