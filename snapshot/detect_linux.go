package snapshot

import (
	"errors"
	"fmt"
	"log/slog"
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
			return d, nil
		}
		log.Debug("snapshot driver unavailable", "driver", name, "err", err)
		errs = append(errs, err)
	}
	d, err := NewCopy(root, opts)
	if err != nil {
		return nil, errors.Join(append(errs, err)...)
	}
	log.Info("using the copy snapshot driver (slower): overlay mounts are not available", "err", errors.Join(errs...))
	return d, nil
}

// oneOptions returns the optional trailing Options argument of a constructor.
func oneOptions(o []Options) Options {
	if len(o) > 0 {
		return o[0]
	}
	return Options{}
}
