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
