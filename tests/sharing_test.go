package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// shortRoot is a store root whose run root podman accepts (at most 50
// characters), removed after the test.
func shortRoot(t *testing.T) (string, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "bs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command("umount", "-R", dir+"/root/vfs").Run()
		os.RemoveAll(dir)
	})
	return dir + "/root", dir + "/root-run"
}

// podmanAt runs podman (runc, as on this machine) against the store root.
func podmanAt(t *testing.T, root, run string, args ...string) string {
	t.Helper()
	full := append([]string{"--root", root, "--runroot", run, "--storage-driver", "vfs", "--runtime", "runc"}, args...)
	return mustRun(t, "podman", full...)
}

// While podman has a running container on the same store (its layer
// mounted), every builder command still succeeds: the store's shutdown
// error about other tools' mounts is not builder's.
func TestSharedStoreWithPodmanContainer(t *testing.T) {
	root, run := shortRoot(t)
	ctx := contextDir(t, "FROM "+env.baseOCI+"\nCOPY a.txt /a.txt\n", map[string]string{"a.txt": "shared\n"})
	must(t, root, nil, nil, "bud", "-q", "-t", "localhost/shared:v1", ctx)
	must(t, root, nil, nil, "bud", "-q", "-t", "localhost/other:v1", "--build-arg", "X=1", contextDir(t, "FROM "+env.baseOCI+"\nLABEL x=1\n", nil))
	podmanAt(t, root, run, "run", "-d", "--name", "holder", "--network", "none",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "localhost/shared:v1", "sleep", "120")
	defer exec.Command("podman", "--root", root, "--runroot", run, "--storage-driver", "vfs", "--runtime", "runc", "rm", "-f", "-t", "0", "holder").Run()
	for _, args := range [][]string{
		{"images"},
		{"inspect", "localhost/shared:v1"},
		{"tag", "localhost/shared:v1", "localhost/shared:v2"},
		{"push", "localhost/shared:v1", "oci:" + filepath.Join(t.TempDir(), "oci") + ":v1"},
		{"rmi", "localhost/other:v1"},
		{"bud", "-q", "-t", "localhost/again:v1", ctx},
	} {
		if so, se, code := runAt(root, nil, nil, args...); code != 0 {
			t.Errorf("builder %s with podman's container running: exit %d\n%s%s", strings.Join(args, " "), code, so, se)
		}
	}
}

// A store podman made with vfs and no storage.conf naming a driver:
// builder takes vfs too (saying so once) instead of adding overlay, after
// which both tools would refuse the store.
func TestAdoptsTheStoresDriver(t *testing.T) {
	root, run := shortRoot(t)
	podmanAt(t, root, run, "pull", "-q", env.baseOCI)
	conf := filepath.Join(t.TempDir(), "storage.conf")
	os.WriteFile(conf, []byte("[storage]\n"), 0o644)
	envs := []string{"CONTAINERS_STORAGE_CONF=" + conf}
	b := func(args ...string) (string, string, int) {
		cmd := exec.Command(env.bin, append([]string{"--root", root, "--runroot", run}, args...)...)
		cmd.Env = append(os.Environ(), envs...)
		var so, se strings.Builder
		cmd.Stdout, cmd.Stderr = &so, &se
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return so.String(), se.String(), code
	}
	ctx := contextDir(t, "FROM "+env.baseOCI+"\nCOPY a.txt /a.txt\n", map[string]string{"a.txt": "adopt\n"})
	_, se, code := b("bud", "-q", "-t", "localhost/adopted:v1", ctx)
	if code != 0 || !strings.Contains(se, "driver=vfs") {
		t.Fatalf("bud: exit %d, want 0 and the adopted driver said\n%s", code, se)
	}
	so, se, code := b("images")
	if code != 0 || !strings.Contains(so, "localhost/adopted") || strings.Contains(se, "driver=vfs") {
		t.Errorf("images: exit %d (the adoption is said once)\n%s%s", code, so, se)
	}
	if _, err := os.Stat(filepath.Join(root, "overlay-layers")); err == nil {
		t.Error("builder created an overlay store beside podman's vfs one")
	}
	if out := podmanAt(t, root, run, "images"); !strings.Contains(out, "localhost/adopted") {
		t.Errorf("podman images after builder:\n%s", out)
	}
}
