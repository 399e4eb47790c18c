package tests

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startPlainRegistry starts docker-registry on loopback with neither TLS
// nor auth, as a team's cache registry often is; it stops with the test.
func startPlainRegistry(t *testing.T) string {
	ensureTools(t)
	dir := t.TempDir()
	addr := freePort(t)
	conf := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n",
		filepath.Join(dir, "data"), addr)
	cf := filepath.Join(dir, "config.yml")
	os.WriteFile(cf, []byte(conf), 0o644)
	cmd := exec.Command("docker-registry", "serve", cf)
	logf, _ := os.Create(filepath.Join(dir, "registry.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		if i == 100 {
			b, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
			t.Fatalf("registry did not come up: %v\n%s", err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// plantFile writes a root-owned 0600 file at path for the test's length,
// unless one is there already (then it is left alone); directories it had
// to make go too.
func plantFile(t *testing.T, path string) {
	if _, err := os.Lstat(path); err == nil {
		return
	}
	var made []string
	for d := filepath.Dir(path); ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		}
		made = append(made, d)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.Remove(path)
		for _, d := range made {
			os.Remove(d)
		}
	})
}

// TestRootlessUnreadableAuthFiles: a rootless build started by su, runuser
// or cron (no XDG_RUNTIME_DIR) pulls from an open registry although root
// has an auth file in /run/containers/0 and the user's Docker config is
// root's (left by `sudo docker login`): neither is the user's to read, and
// neither may abort the pull.
func TestRootlessUnreadableAuthFiles(t *testing.T) {
	u := ensureUser(t, "buildertest")
	addr := startPlainRegistry(t)
	mustRun(t, "skopeo", "copy", "-q", "--dest-tls-verify=false", env.baseOCI, "docker://"+addr+"/busybox:latest")
	plantFile(t, "/run/containers/0/auth.json")
	dockerCfg := filepath.Join(u.home, ".docker", "config.json")
	plantFile(t, dockerCfg)

	work := filepath.Join(env.tmp, "rootless-auth")
	os.MkdirAll(filepath.Join(work, "ctx"), 0o755)
	os.WriteFile(filepath.Join(work, "ctx", "Dockerfile"), []byte("FROM "+addr+"/busybox:latest\nRUN id -u > /uid\n"), 0o644)
	mustRun(t, "chown", "-R", u.name+":", work)
	t.Cleanup(func() { os.RemoveAll(work) })

	cmd := exec.Command("runuser", "-u", u.name, "--", "env", "-u", "XDG_RUNTIME_DIR", "HOME="+u.home, "USER="+u.name,
		env.bin, "--root", filepath.Join(work, "root"), "--runroot", filepath.Join(work, "run"), "--storage-driver", "vfs",
		"bud", "--tls-verify=false", "-t", "localhost/auth-test", filepath.Join(work, "ctx"))
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("rootless build without XDG_RUNTIME_DIR: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "ignoring an auth file that cannot be read") || !strings.Contains(string(out), dockerCfg) {
		t.Errorf("the skipped %s was not reported:\n%s", dockerCfg, out)
	}
	if strings.Contains(string(out), "/run/containers/0") {
		t.Errorf("root's runtime auth file was looked at:\n%s", out)
	}
}
