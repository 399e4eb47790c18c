package executor

// Views of a selection: what a RUN bind mount shows when the source has
// ignore rules (or the mount is writable) is a tree built from the
// selection walker's entries, so the mount holds exactly what the step's
// cache key covers.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/builder-dev/builder/executor/selection"
	"golang.org/x/sys/unix"
)

// materialize builds at dst the item and what the walker selects below
// it. Regular files are hard links to the sources where that works and
// the view is read-only (one link per file, no data copied); copies
// otherwise. Directory modes are set after their contents.
func (e *Executor) materialize(ctx context.Context, src *srcRoot, it *selection.Item, dst string, readOnly bool) error {
	type dirMode struct {
		path string
		mode fs.FileMode
	}
	var dirs []dirMode
	err := src.Walk(ctx, it, nil, selection.Visitor{Visit: func(en *selection.Entry) error {
		t := filepath.Join(dst, filepath.FromSlash(en.Sub))
		if en.Implied {
			if err := os.MkdirAll(filepath.Dir(t), 0o755); err != nil {
				return err
			}
		}
		mode := en.Info.Mode()
		switch {
		case mode.IsDir():
			if err := os.Mkdir(t, 0o700); err != nil {
				return err
			}
			dirs = append(dirs, dirMode{t, mode & (fs.ModePerm | fs.ModeSetgid | fs.ModeSticky)})
			return nil
		case mode&fs.ModeSymlink != 0:
			target, err := en.Dir.Readlink(en.Name)
			if err != nil {
				return err
			}
			return os.Symlink(target, t)
		case mode.IsRegular():
			return viewFile(en, t, readOnly)
		default:
			return nil // devices, fifos and sockets are not part of a view
		}
	}})
	if err != nil {
		return fmt.Errorf("view of %s: %w", it.Rel, err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i].path, dirs[i].mode); err != nil {
			return err
		}
	}
	return nil
}

// viewFile puts the entry's file at t: a hard link to the open file (so a
// path swapped under us cannot redirect it), else a copy.
func viewFile(en *selection.Entry, t string, link bool) error {
	f, err := en.Dir.Open(en.Name)
	if err != nil {
		return err
	}
	defer f.Close()
	if link {
		err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", f.Fd()), unix.AT_FDCWD, t, unix.AT_SYMLINK_FOLLOW)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EXDEV) && !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.ENOENT) {
			return err
		}
	}
	out, err := os.OpenFile(t, os.O_CREATE|os.O_EXCL|os.O_WRONLY, en.Info.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, f); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(t, en.Info.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
}
