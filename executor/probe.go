package executor

import (
	"os"
	"path/filepath"
)

// probeChown reports whether files in dir can be given an arbitrary owner:
// true as real root or inside a user namespace with a subordinate range.
func probeChown(dir string) bool {
	f, err := os.CreateTemp(dir, ".chown-probe-")
	if err != nil {
		return false
	}
	name := f.Name()
	f.Close()
	defer os.Remove(name)
	// An id other than this process's own: that one always works.
	id := 1000
	if os.Geteuid() == id || os.Getegid() == id {
		id = 1001
	}
	return os.Lchown(filepath.Clean(name), id, id) == nil
}
