package executor

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// idPair is a resolved uid/gid.
type idPair struct{ UID, GID int }

// resolveChown turns "user[:group]" into numeric ids using the rootfs'
// /etc/passwd and /etc/group, as docker does for COPY --chown and USER.
// A numeric user with no group gets gid = uid; a named user with no group
// gets the user's primary group.
func resolveChown(rootfs *os.Root, spec string) (idPair, error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" {
		return idPair{}, fmt.Errorf("invalid user %q", spec)
	}
	var ids idPair
	if n, err := strconv.Atoi(userPart); err == nil {
		if n < 0 {
			return idPair{}, fmt.Errorf("invalid uid %q", userPart)
		}
		ids = idPair{n, n}
		if !hasGroup {
			// A numeric uid known in passwd takes its primary group.
			if e, ok, _ := lookupPasswd(rootfs, func(f []string) bool { return f[2] == userPart }); ok {
				ids.GID = e.GID
			}
		}
	} else {
		e, ok, err := lookupPasswd(rootfs, func(f []string) bool { return f[0] == userPart })
		if err != nil {
			return idPair{}, err
		}
		if !ok {
			return idPair{}, fmt.Errorf("unable to find user %s: no matching entries in passwd file", userPart)
		}
		ids = e
	}
	if hasGroup {
		if groupPart == "" {
			return idPair{}, fmt.Errorf("invalid group in %q", spec)
		}
		if n, err := strconv.Atoi(groupPart); err == nil {
			if n < 0 {
				return idPair{}, fmt.Errorf("invalid gid %q", groupPart)
			}
			ids.GID = n
		} else {
			gid, ok, err := lookupGroup(rootfs, groupPart)
			if err != nil {
				return idPair{}, err
			}
			if !ok {
				return idPair{}, fmt.Errorf("unable to find group %s: no matching entries in group file", groupPart)
			}
			ids.GID = gid
		}
	}
	return ids, nil
}

func lookupPasswd(rootfs *os.Root, match func([]string) bool) (idPair, bool, error) {
	var out idPair
	found := false
	err := scanColonFile(rootfs, "etc/passwd", func(f []string) bool {
		if len(f) < 4 || !match(f) {
			return false
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			return false
		}
		out, found = idPair{uid, gid}, true
		return true
	})
	return out, found, err
}

func lookupGroup(rootfs *os.Root, name string) (int, bool, error) {
	gid, found := 0, false
	err := scanColonFile(rootfs, "etc/group", func(f []string) bool {
		if len(f) < 3 || f[0] != name {
			return false
		}
		n, err := strconv.Atoi(f[2])
		if err != nil {
			return false
		}
		gid, found = n, true
		return true
	})
	return gid, found, err
}

// scanColonFile calls fn for each colon-separated line until it returns
// true. A missing file is not an error (scratch images have none).
func scanColonFile(rootfs *os.Root, name string, fn func([]string) bool) error {
	if rootfs == nil {
		return nil
	}
	f, err := rootfs.Open(name)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read /%s: %w", name, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 16<<20))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if fn(strings.Split(line, ":")) {
			return nil
		}
	}
	return sc.Err()
}

// userInfo is a resolved RUN user.
type userInfo struct {
	UID, GID int
	groups   []uint32 // supplementary groups from /etc/group
	home     string
}

// resolveUser resolves USER as a RUN runs it: a name or uid, optionally
// with a group; a uid unknown to /etc/passwd runs with gid 0 and HOME=/,
// as docker does; supplementary groups come from /etc/group membership.
func resolveUser(rootfs *os.Root, spec string) (userInfo, error) {
	u := userInfo{home: "/root"}
	if spec == "" {
		spec = "0"
	}
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	var name string
	var found bool
	err := scanColonFile(rootfs, "etc/passwd", func(f []string) bool {
		if len(f) < 6 || (f[0] != userPart && f[2] != userPart) {
			return false
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			return false
		}
		u.UID, u.GID, u.home, name, found = uid, gid, f[5], f[0], true
		return true
	})
	if err != nil {
		return u, err
	}
	if !found {
		n, err := strconv.Atoi(userPart)
		if err != nil || n < 0 {
			return u, fmt.Errorf("unable to find user %s: no matching entries in passwd file", userPart)
		}
		u.UID, u.GID, u.home = n, 0, "/"
		if n == 0 {
			u.home = "/root"
		}
	}
	if hasGroup {
		if n, err := strconv.Atoi(groupPart); err == nil && n >= 0 {
			u.GID = n
		} else {
			gid, ok, err := lookupGroup(rootfs, groupPart)
			if err != nil {
				return u, err
			}
			if !ok {
				return u, fmt.Errorf("unable to find group %s: no matching entries in group file", groupPart)
			}
			u.GID = gid
		}
	}
	if name != "" && !hasGroup {
		err := scanColonFile(rootfs, "etc/group", func(f []string) bool {
			if len(f) < 4 {
				return false
			}
			for _, m := range strings.Split(f[3], ",") {
				if m == name {
					if gid, err := strconv.Atoi(f[2]); err == nil && gid != u.GID {
						u.groups = append(u.groups, uint32(gid))
					}
				}
			}
			return false
		})
		if err != nil {
			return u, err
		}
	}
	return u, nil
}
