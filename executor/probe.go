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
	return os.Lchown(filepath.Clean(name), 1000, 1000) == nil
}
