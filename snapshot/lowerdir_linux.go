package snapshot

import (
	"errors"
	"strings"

	"golang.org/x/sys/unix"
)

// Opaque markers an upper or lower dir may carry: the kernel's (both namespaces) and
// fuse-overlayfs's own, used when it cannot write trusted.* (it also leaves a ".wh..wh..opq" file).
var opaqueXattrs = []string{"trusted.overlay.opaque", "user.overlay.opaque", "user.fuseoverlayfs.opaque"}

// isWhiteoutDev reports a 0/0 character device, overlay's whiteout.
func isWhiteoutDev(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// dirOpaque reports whether the open directory fd is marked opaque by one of xattrs, or, with
// markerFile, by a ".wh..wh..opq" entry.
func dirOpaque(fd int, xattrs []string, markerFile bool) bool {
	for _, x := range xattrs {
		if v, err := getXattr(fd, x); err == nil && string(v) == "y" {
			return true
		}
	}
	if !markerFile {
		return false
	}
	_, err := lstatAt(fd, whiteoutOpaque)
	return err == nil
}

// lowerEntry is what the merged lower layers show at a path.
type lowerEntry struct {
	exists, dir bool
	// known: st and xattrs (the tar-visible ones, directories only) were read. Unknown entries
	// are treated as existing directories that differ from anything: the safe answer for each
	// use (an opaque marker or a whiteout too many hides nothing; a kept directory is harmless).
	known  bool
	st     unix.Stat_t
	xattrs []xattr
}

// lowerFunc looks a clean relative path up in the lower layers of a snapshot.
type lowerFunc func(rel string) lowerEntry

// layersLower returns the lowerFunc of layer dirs (top first), whose directories the opaque xattrs
// (or a ".wh..wh..opq" file) mark opaque. It follows overlay's lookup: per layer, component by
// component, never following symlinks; a whiteout (0/0 device or ".wh." file) or a non-directory
// hides everything below, and an opaque directory hides the layers beneath it.
func layersLower(lowers, opaque []string) lowerFunc {
	return func(rel string) lowerEntry {
		if rel == "" {
			return lowerEntry{exists: true, dir: true}
		}
		parts := strings.Split(rel, "/")
		for _, l := range lowers {
			e, stop, err := lookupInLayer(l, parts, opaque)
			if err != nil {
				return lowerEntry{exists: true, dir: true}
			}
			if stop {
				return e
			}
		}
		return lowerEntry{known: true}
	}
}

// lookupInLayer looks parts up in one layer. stop means lower layers need not be consulted: the
// layer has the entry or hides it.
func lookupInLayer(layer string, parts, opaque []string) (e lowerEntry, stop bool, err error) {
	fd, err := unix.Open(layer, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return e, false, err
	}
	defer func() { unix.Close(fd) }()
	opaqueAbove := false
	for i, name := range parts {
		st, err := lstatAt(fd, name)
		if errors.Is(err, unix.ENOENT) {
			if _, werr := lstatAt(fd, whiteoutPrefix+name); werr == nil {
				return lowerEntry{known: true}, true, nil // whiteout file (fuse-overlayfs format)
			}
			return lowerEntry{known: true}, opaqueAbove, nil
		}
		if err != nil {
			return e, false, err
		}
		if isWhiteoutDev(&st) || (!isDir(&st) && i < len(parts)-1) {
			return lowerEntry{known: true}, true, nil
		}
		if !isDir(&st) {
			return lowerEntry{exists: true, known: true, st: st}, true, nil
		}
		next, err := openDirAt(fd, name)
		if err != nil {
			return e, false, err
		}
		unix.Close(fd)
		fd = next
		if i == len(parts)-1 {
			xs, err := readXattrs(fd, keepXattrInTar)
			if err != nil {
				return e, false, err
			}
			return lowerEntry{exists: true, dir: true, known: true, st: st, xattrs: xs}, true, nil
		}
		opaqueAbove = opaqueAbove || dirOpaque(fd, opaque, true)
	}
	return e, false, nil
}
