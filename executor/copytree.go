package executor

import (
	"context"

	"github.com/builder-dev/builder/snapshot"
)

// copyTree copies a directory (for writable bind mounts).
func copyTree(ctx context.Context, src, dst string) error {
	return snapshot.CopyTree(ctx, src, dst, snapshot.ApplyOptions{IgnoreChownErrors: true, IgnoreXattrErrors: true})
}
