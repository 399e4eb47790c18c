package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage/pkg/ioutils"
)

// FileHashes remembers the content digest of files between builds, keyed
// by path and trusted while (device, inode, size, mtime, ctime) are
// unchanged, as git's index does: a cache-warm rebuild stats the context
// instead of reading it. A file whose ctime is within racyWindow of the
// moment it was hashed is not remembered (it may change again within the
// file system's timestamp granularity without its stat changing).
type FileHashes struct {
	path string
	mu   sync.Mutex
	old  map[string]fileEntry
	seen map[string]fileEntry
}

type fileEntry struct {
	Dev, Ino     uint64
	Size         int64
	Mtime, Ctime int64 // ns
	Digest       digest.Digest
}

const racyWindow = 2 * time.Second

// LoadFileHashes reads the index at path; a missing or damaged one is an
// empty index (it is only ever a shortcut).
func LoadFileHashes(path string) *FileHashes {
	h := &FileHashes{path: path, old: map[string]fileEntry{}, seen: map[string]fileEntry{}}
	if f, err := os.Open(path); err == nil {
		var m map[string]fileEntry
		if gob.NewDecoder(f).Decode(&m) == nil {
			h.old = m
		}
		f.Close()
	}
	return h
}

// Sum returns the sha256 of the regular file described by st, from the
// index when st matches, else by reading it through open.
// hashBufs are the read buffers of files being hashed (thousands per build).
var hashBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

func (h *FileHashes) Sum(key string, st *syscall.Stat_t, open func() (*os.File, error)) (digest.Digest, error) {
	e := fileEntry{Dev: uint64(st.Dev), Ino: st.Ino, Size: st.Size,
		Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}
	h.mu.Lock()
	old, ok := h.old[key]
	h.mu.Unlock()
	if ok && old.Dev == e.Dev && old.Ino == e.Ino && old.Size == e.Size && old.Mtime == e.Mtime && old.Ctime == e.Ctime {
		h.remember(key, old)
		return old.Digest, nil
	}
	f, err := open()
	if err != nil {
		return "", err
	}
	defer f.Close()
	sum := sha256.New()
	bp := hashBufs.Get().(*[]byte)
	n, err := io.CopyBuffer(sum, struct{ io.Reader }{f}, *bp) // no WriteTo: it would allocate a buffer per file
	hashBufs.Put(bp)
	if err != nil {
		return "", err
	}
	if n != st.Size {
		return "", fmt.Errorf("%s changed while it was read", key)
	}
	e.Digest = digest.NewDigest(digest.SHA256, sum)
	if time.Since(time.Unix(0, e.Ctime)) > racyWindow {
		h.remember(key, e)
	}
	return e.Digest, nil
}

func (h *FileHashes) remember(key string, e fileEntry) {
	h.mu.Lock()
	h.seen[key] = e
	h.mu.Unlock()
}

// Save writes the entries used by this build (others are forgotten, so the
// index follows the context) to a temp file and renames it into place.
func (h *FileHashes) Save() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.seen) == 0 && len(h.old) == 0 {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(h.path), 0o700); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(h.seen); err != nil {
		return err
	}
	// No fsync: a lost index only costs one rehash.
	if err := ioutils.AtomicWriteFileWithOpts(h.path, buf.Bytes(), 0o600, &ioutils.AtomicFileWriterOptions{NoSync: true}); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
