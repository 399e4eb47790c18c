package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A build starts while the store opens (images.OpenBackground); a store
// that cannot open still fails it with the store's own error, and at once:
// the long RUN it had started is stopped, not waited for.
func TestBudStoreOpenFails(t *testing.T) {
	dir := t.TempDir()
	ctxDir := filepath.Join(dir, "ctx")
	if err := os.MkdirAll(ctxDir, 0o755); err != nil {
		t.Fatal(err)
	}
	df := "FROM " + env.baseOCI + "\nRUN sleep 600\n"
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.bin, "--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
		"--storage-driver", "no-such-driver", "bud", "-t", "localhost/storeopen:latest", ctxDir)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the build outlived its store's failed open (killed after 2 minutes):\n%s", out)
	}
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() == 0 {
		t.Fatalf("want a non-zero exit, got %v:\n%s", err, out)
	}
	if !strings.Contains(string(out), "opening storage") || !strings.Contains(string(out), "no-such-driver") {
		t.Errorf("the error does not name the store's open failure:\n%s", out)
	}
}
