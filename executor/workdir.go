package executor

import (
	"context"
	"os"
	"strings"

	"github.com/builder-dev/builder/dockerfile"
)

// workdir creates WORKDIR's directory when it is missing, owned by the
// current USER as BuildKit does. It reports whether a layer was made.
func (e *Executor) workdir(ctx context.Context, s *stageState, m *dockerfile.Meta) (bool, error) {
	rel := strings.TrimPrefix(m.Mkdir, "/")
	if rel == "" {
		return false, nil
	}
	snap, err := e.prepare(ctx, s)
	if err != nil {
		return false, err
	}
	defer snap.Release()
	rootfs, err := os.OpenRoot(snap.Root())
	if err != nil {
		return false, err
	}
	defer rootfs.Close()
	if fi, err := rootfs.Stat(rel); err == nil && fi.IsDir() {
		return false, nil
	}
	job := &copyJob{e: e, step: &dockerfile.Copy{}, up: rootfs, rootfs: rootfs}
	if u := s.img.Config.Config.User; u != "" {
		if ids, err := resolveChown(rootfs, u); err == nil {
			job.owner = &ids
		}
	}
	dest, err := job.resolveDest(m.Mkdir)
	if err != nil {
		return false, err
	}
	if dest == "" {
		return false, nil
	}
	if err := job.mkdirParents(dest + "/x"); err != nil {
		return false, err
	}
	if err := job.finishDirs(); err != nil {
		return false, err
	}
	rootfs.Close()
	if err := e.commitMount(ctx, s, snap, m.String()); err != nil {
		return false, err
	}
	return true, nil
}
