package snapshot

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"golang.org/x/sys/unix"
)

// Open returns the named driver rooted at root: "overlay", "fuse-overlayfs", or "copy" ("vfs" is
// an alias, after the storage driver of the same idea). Mount-based drivers fail here, with the
// reason, when they cannot work in this process. o is at most one Options (default: the zero value).
func Open(name, root string, o ...Options) (Driver, error) {
	switch name {
	case "overlay":
		return NewOverlay(root, oneOptions(o))
	case "fuse-overlayfs":
		return NewFuseOverlay(root, "", o...)
	case "copy", "vfs":
		return NewCopy(root, o...)
	}
	return nil, fmt.Errorf("unknown snapshot driver %q (overlay, fuse-overlayfs, copy)", name)
}

// Detect returns the fastest driver that works here: kernel overlayfs, then fuse-overlayfs, then
// copy. Each candidate proves itself by mounting a scratch overlay under root and checking the
// whiteout and opaque formats it produces. Why a candidate was passed over goes to log (nil:
// discarded), which also replaces Options.Log.
func Detect(root string, log *slog.Logger, o ...Options) (Driver, error) {
	d, _, err := DetectWhy(root, log, o...)
	return d, err
}

// DetectWhy is Detect that also says, when it falls back to copies, why
// neither overlay driver works (with the fix for a store on overlayfs, a
// container's root file system, where kernel overlay refuses an upper
// directory).
func DetectWhy(root string, log *slog.Logger, o ...Options) (Driver, string, error) {
	opts := oneOptions(o)
	if log != nil {
		opts.Log = log
	}
	log = opts.logger()
	var errs []error
	for _, name := range []string{"overlay", "fuse-overlayfs"} {
		d, err := Open(name, root, opts)
		if err == nil {
			log.Debug("snapshot driver", "driver", name)
			return d, "", nil
		}
		log.Debug("snapshot driver unavailable", "driver", name, "err", err)
		errs = append(errs, fmt.Errorf("%s: %s", name, tail(err)))
	}
	d, err := NewCopy(root, opts)
	if err != nil {
		return nil, "", errors.Join(append(errs, err)...)
	}
	why := errors.Join(errs...).Error()
	why = strings.ReplaceAll(why, "\n", "; ")
	var st unix.Statfs_t
	if unix.Statfs(root, &st) == nil && st.Type == unix.OVERLAYFS_SUPER_MAGIC {
		why += "; the store is on overlayfs (a container's root file system), where kernel overlay cannot put its upper directory: put the store on a volume (an emptyDir in a pod)"
	}
	return d, why, nil
}

// oneOptions returns the optional trailing Options argument of a constructor.
func oneOptions(o []Options) Options {
	if len(o) > 0 {
		return o[0]
	}
	return Options{}
}

// tail is the end of a mount error, after the long option list a failed
// mount names ("mount overlay (lowerdir=...): operation not permitted").
func tail(err error) string {
	s := err.Error()
	for _, sep := range []string{"): ", "exit status 1: "} {
		if i := strings.LastIndex(s, sep); i >= 0 {
			return s[i+len(sep):]
		}
	}
	return s
}
