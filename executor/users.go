package executor

// Users and groups of an image, as runc and docker read them: the parsing
// and the USER rules are moby/sys/user's (a numeric user is always the id
// itself, never a name; ids outside 0..2^31-1 are refused).

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/user"
)

// idPair is a resolved uid/gid.
type idPair struct{ UID, GID int }

// maxIDFile bounds how much of /etc/passwd or /etc/group is read: both
// come from the image.
const maxIDFile = 16 << 20

// openIDFile opens /etc/passwd or /etc/group of the rootfs; a missing file
// (scratch images have none) is an empty one.
func openIDFile(rootfs *os.Root, name string) (io.ReadCloser, error) {
	if rootfs == nil {
		return io.NopCloser(strings.NewReader("")), nil
	}
	f, err := rootfs.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return io.NopCloser(strings.NewReader("")), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read /%s: %w", name, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(f, maxIDFile), f}, nil
}

func passwdEntries(rootfs *os.Root, match func(user.User) bool) ([]user.User, error) {
	r, err := openIDFile(rootfs, "etc/passwd")
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return user.ParsePasswdFilter(r, match)
}

func groupEntries(rootfs *os.Root, match func(user.Group) bool) ([]user.Group, error) {
	r, err := openIDFile(rootfs, "etc/group")
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return user.ParseGroupFilter(r, match)
}

// parseID reads a numeric id; ok is false for a name.
func parseID(s, what string) (int, bool, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, true, fmt.Errorf("invalid %s %q: %w", what, s, user.ErrRange)
		}
		return 0, false, nil
	}
	if n < 0 || n > 1<<31-1 {
		return 0, true, fmt.Errorf("invalid %s %q: %w", what, s, user.ErrRange)
	}
	return n, true, nil
}

// resolveChown turns "user[:group]" into numeric ids using the rootfs'
// /etc/passwd and /etc/group, as docker does for COPY --chown and WORKDIR.
// A numeric user with no group gets its passwd entry's group, else gid =
// uid; a named user with no group gets the user's primary group.
func resolveChown(rootfs *os.Root, spec string) (idPair, error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" {
		return idPair{}, fmt.Errorf("invalid user %q", spec)
	}
	uid, numeric, err := parseID(userPart, "uid")
	if err != nil {
		return idPair{}, err
	}
	ids := idPair{uid, uid}
	users, err := passwdEntries(rootfs, func(u user.User) bool {
		if numeric {
			return u.Uid == uid
		}
		return u.Name == userPart
	})
	if err != nil {
		return idPair{}, err
	}
	switch {
	case len(users) > 0:
		ids = idPair{users[0].Uid, users[0].Gid}
	case !numeric:
		return idPair{}, fmt.Errorf("unable to find user %s: %w", userPart, user.ErrNoPasswdEntries)
	}
	if hasGroup {
		if ids.GID, err = resolveGroup(rootfs, groupPart); err != nil {
			return idPair{}, err
		}
	}
	return ids, nil
}

func resolveGroup(rootfs *os.Root, name string) (int, error) {
	if name == "" {
		return 0, fmt.Errorf("invalid group %q", name)
	}
	gid, numeric, err := parseID(name, "gid")
	if err != nil || numeric {
		return gid, err
	}
	groups, err := groupEntries(rootfs, func(g user.Group) bool { return g.Name == name })
	if err != nil {
		return 0, err
	}
	if len(groups) == 0 {
		return 0, fmt.Errorf("unable to find group %s: %w", name, user.ErrNoGroupEntries)
	}
	return groups[0].Gid, nil
}

// userInfo is a resolved RUN user.
type userInfo struct {
	UID, GID int
	groups   []uint32 // the primary group, then the user's groups from /etc/group
	home     string
}

// resolveUser resolves USER as runc and docker run it: a name or uid,
// optionally with a group; a uid unknown to /etc/passwd runs with gid 0
// and HOME=/. The groups list starts with the primary gid (so a process
// cannot shed it to escape a group's denial, the class of CVE-2022-36109)
// and holds every group /etc/group lists the user in, with or without an
// explicit group.
func resolveUser(rootfs *os.Root, spec string) (userInfo, error) {
	passwd, err := openIDFile(rootfs, "etc/passwd")
	if err != nil {
		return userInfo{}, err
	}
	defer passwd.Close()
	group, err := openIDFile(rootfs, "etc/group")
	if err != nil {
		return userInfo{}, err
	}
	defer group.Close()
	eu, err := user.GetExecUser(spec, &user.ExecUser{Home: "/"}, passwd, group)
	if err != nil {
		return userInfo{}, err
	}
	u := userInfo{UID: eu.Uid, GID: eu.Gid, home: eu.Home, groups: []uint32{uint32(eu.Gid)}}
	if u.UID == 0 && u.home == "/" {
		u.home = "/root"
	}
	// GetExecUser gives supplementary groups only without an explicit
	// group; the user's memberships apply either way.
	name := ""
	if users, err := passwdEntries(rootfs, func(x user.User) bool { return x.Uid == eu.Uid }); err == nil && len(users) > 0 {
		name = users[0].Name
	}
	if name != "" {
		gs, err := groupEntries(rootfs, func(g user.Group) bool { return slices.Contains(g.List, name) })
		if err != nil {
			return userInfo{}, err
		}
		for _, g := range gs {
			if gid := uint32(g.Gid); !slices.Contains(u.groups, gid) {
				u.groups = append(u.groups, gid)
			}
		}
	}
	return u, nil
}
