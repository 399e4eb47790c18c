package snapshot

import (
	"log/slog"
	"os"
)

// NewScratchDir makes a directory under parent named prefix+random and
// locks it for the life of the process, after removing the directories
// with that prefix that no live process holds (left by a build that was
// killed). It is the snapshot drivers' own scheme for their work
// directories, offered to callers that need scratch space of their own.
func NewScratchDir(parent, prefix string, log *slog.Logger) (string, error) {
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sweepStale(parent, prefix, nil, log)
	d, err := newLockedDir(parent, prefix)
	if err != nil {
		return "", err
	}
	// The lock is never released: it ends with the process, which marks
	// the directory as abandoned for the next sweep.
	return d.path, nil
}
