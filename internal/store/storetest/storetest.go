// Package storetest opens throwaway containers/storage stores for tests.
package storetest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/builder-dev/builder/internal/store"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/reexec"
)

// Main is TestMain for packages that write to a store: containers/storage
// re-executes the test binary to apply layers (chrootarchive), which needs
// reexec.Init at start-up, as in the builder's main.
func Main(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

// New opens a vfs store under a temporary directory and shuts it down when
// the test ends. Root and RunRoot are returned through Options.
func New(t testing.TB) (storage.Store, store.Options) {
	t.Helper()
	dir := t.TempDir()
	o := store.Options{
		Root:    filepath.Join(dir, "root"),
		RunRoot: filepath.Join(dir, "runroot"),
		Driver:  "vfs",
	}
	s, err := store.Open(o)
	if err != nil {
		t.Fatalf("opening test store: %v", err)
	}
	t.Cleanup(func() {
		if _, err := s.Shutdown(true); err != nil {
			t.Errorf("store shutdown: %v", err)
		}
	})
	return s, o
}

// Sys returns a SystemContext isolated from the host's configuration: an
// empty registries.conf (no unqualified-search registries, no aliases) and
// a private blob-info cache.
func Sys(t testing.TB) *types.SystemContext {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "registries.conf")
	if err := os.WriteFile(conf, []byte("unqualified-search-registries = []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return &types.SystemContext{
		SystemRegistriesConfPath:    conf,
		SystemRegistriesConfDirPath: filepath.Join(dir, "registries.conf.d"),
		BlobInfoCacheDir:            filepath.Join(dir, "cache"),
		UserShortNameAliasConfPath:  filepath.Join(dir, "aliases.conf"),
	}
}
