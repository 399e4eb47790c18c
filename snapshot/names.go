// Package snapshot turns directory trees into OCI layer tars and layer tars back into trees.
//
// WriteTar walks a plain tree or an overlay upper dir and streams a deterministic PAX tar; Apply
// extracts a layer (or an ADD archive) inside a root it never escapes; Merge and CopyTree move and
// copy trees for the copy snapshot driver and COPY steps. Everything works on directory descriptors
// and *at system calls, so a symlink planted in a tree cannot redirect a write outside its root.
package snapshot

import (
	"errors"
	"fmt"
	"strings"
)

// Whiteout names of the OCI image spec (and of containers/storage's pkg/archive).
const (
	whiteoutPrefix     = ".wh."
	whiteoutMetaPrefix = whiteoutPrefix + whiteoutPrefix // ".wh..wh.": reserved, ignored when applying
	whiteoutOpaque     = whiteoutMetaPrefix + ".opq"     // ".wh..wh..opq": hide the lower contents of a directory
)

var errUnsafeName = errors.New("unsafe path")

// cleanName turns a tar entry name into a clean relative path ("" is the root itself). It accepts
// "./" prefixes, repeated and trailing slashes; it refuses absolute names and any ".." component,
// even one that would cancel out, because a layer has no reason to contain one.
func cleanName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w: %q is absolute", errUnsafeName, name)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: %q contains NUL", errUnsafeName, name)
	}
	var b strings.Builder
	for part := range strings.SplitSeq(name, "/") {
		switch part {
		case "", ".":
			continue
		case "..":
			return "", fmt.Errorf("%w: %q contains \"..\"", errUnsafeName, name)
		}
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		b.WriteString(part)
	}
	return b.String(), nil
}

// splitName splits a clean relative path into its parent ("" for the root) and base name.
func splitName(rel string) (dir, base string) {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i], rel[i+1:]
	}
	return "", rel
}

func joinName(dir, base string) string {
	if dir == "" {
		return base
	}
	return dir + "/" + base
}

// Overlay-internal xattr namespaces: the kernel's (trusted./user.overlay.), fuse-overlayfs's, and
// containers/storage's ownership override. They describe one host's overlay, never image content.
var overlayXattrPrefixes = []string{"trusted.overlay.", "user.overlay.", "user.fuseoverlayfs.", "user.containers.override_stat"}

func isOverlayXattr(name string) bool {
	for _, p := range overlayXattrPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// keepXattrInTar is the write policy: user.* (except overlay bookkeeping) and file capabilities.
// security.selinux is a host label, system.* are ACLs the kernel derives from modes, trusted.* need
// host privilege: none belongs in a portable layer.
func keepXattrInTar(name string) bool {
	if strings.HasPrefix(name, "user.") {
		return !isOverlayXattr(name) && name != OwnerXattr
	}
	return name == "security.capability"
}

// OwnerXattr records, as "UID:GID", the owner a file should have in a
// layer where it could not be given it (no chown: a single-id user
// namespace, or a non-root process without one). The layer writer reads it
// instead of the file's real owner and never writes it into a layer; an
// archive cannot set it.
const OwnerXattr = "user.builder.owner"

// keepXattrInCopy is what copying a tree of ours keeps: what extraction
// keeps, and the recorded owner.
func keepXattrInCopy(name string) bool { return name == OwnerXattr || keepXattrOnDisk(name) }

// keepXattrOnDisk is the extraction policy: anything the archive carries except host labels and
// overlay bookkeeping, which could otherwise make a directory opaque or redirect lookups when the
// extracted tree later serves as an overlay lower layer.
func keepXattrOnDisk(name string) bool {
	return name != "" && name != "security.selinux" && !isOverlayXattr(name) && name != OwnerXattr
}

// paxXattr is the PAX record prefix for xattrs (GNU tar, bsdtar, Go and containers/storage agree).
const paxXattr = "SCHILY.xattr."

// ErrReservedName is wrapped by a diff that finds a file a step created
// under a whiteout name: the image-spec reserves the ".wh." prefix, and such
// a file in a layer would delete its namesake for every consumer.
var ErrReservedName = errors.New("names starting with .wh. are reserved for whiteouts by the OCI image-spec; a step may not create them")
