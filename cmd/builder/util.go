package main

import (
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
)

func digestOf(b []byte) digest.Digest { return digest.FromBytes(b) }

// writeFileAtomic writes via a temp file and rename so readers never see a
// partial file.
func writeFileAtomic(name string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), ".tmp-"+filepath.Base(name))
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), name)
}
