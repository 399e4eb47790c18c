package sandbox

import (
	"context"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const unprivUser = "buildertest"

// nestedTests are the tests TestUnprivileged runs again inside the user
// namespace; between them they cover every isolation.
const nestedTests = "^(TestNestedIdentity|TestRun|TestStdin|TestCannotReadHost|TestRootfsUnchanged|TestWritesThroughMounts|TestCancel|TestDetectIsolation|TestOCI)$"

// TestUnprivileged re-executes this test binary as an unprivileged user
// in a new user and mount namespace, as the builder runs when not root:
// once with the user's /etc/subuid and /etc/subgid ranges mapped
// (newuidmap, like containers/storage's re-exec), once with only the user
// mapped to 0 (no subordinate ranges). It needs to start as real root.
func TestUnprivileged(t *testing.T) {
	if os.Getenv(nestedEnv) != "" {
		t.Skip("already inside")
	}
	if os.Geteuid() != 0 || inUserNS() {
		t.Skip("starts as real root to become an unprivileged user")
	}
	for _, tool := range []string{"runuser", "unshare", "newuidmap"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (util-linux, uidmap): %v", tool, err)
		}
	}
	u := ensureUser(t, unprivUser)
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir, err := os.MkdirTemp("", "sandbox-userns-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	must(t, os.Chmod(dir, 0o755))
	self, err := os.Executable()
	must(t, err)
	bin := filepath.Join(dir, "sandbox.test")
	must(t, copyFile(self, bin, 0o755))

	for _, v := range []struct{ name, flags string }{
		{"subids", "--map-root-user --map-auto"},
		{"single", "--map-root-user"},
	} {
		t.Run(v.name, func(t *testing.T) {
			tmp := filepath.Join(dir, "tmp-"+v.name)
			must(t, os.Mkdir(tmp, 0o700))
			must(t, os.Chown(tmp, uid, gid))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			args := append([]string{"-u", unprivUser, "--", "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
				"HOME=" + u.HomeDir, "TMPDIR=" + tmp, nestedEnv + "=" + v.name, "unshare"},
				strings.Fields(v.flags)...)
			args = append(args, "--mount", bin, "-test.run", nestedTests, "-test.count=1", "-test.v")
			cmd := exec.CommandContext(ctx, "runuser", args...)
			cmd.Dir = "/"
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("nested tests as %s (%s): %v\n%s", unprivUser, v.flags, err, out)
			}
			checkNested(t, v.name, string(out))
		})
	}
}

// checkNested makes sure the nested run really ran: everything passed,
// and the only skips are the cases that need a uid the single mapping
// lacks.
func checkNested(t *testing.T, variant, out string) {
	t.Helper()
	for _, want := range []string{"--- PASS: TestNestedIdentity", "--- PASS: TestRun ", "--- PASS: TestRootfsUnchanged",
		"--- PASS: TestCannotReadHost", "--- PASS: TestCancel", "--- PASS: TestOCI"} {
		if !strings.Contains(out, want) {
			t.Errorf("nested output lacks %q:\n%s", want, out)
		}
	}
	skip := regexp.MustCompile(`--- SKIP: (\S+)`)
	for _, m := range skip.FindAllStringSubmatch(out, -1) {
		if variant == "single" && (strings.HasSuffix(m[1], "/user") || strings.HasSuffix(m[1], "/user-caps")) {
			continue
		}
		t.Errorf("nested %s run skipped %s", variant, m[1])
	}
	passes := strings.Count(out, "--- PASS:")
	t.Logf("%s: %d tests and subtests passed as %s in a user namespace", variant, passes, unprivUser)
}

// TestNestedIdentity runs only inside TestUnprivileged and checks that
// the namespace is the one the builder would be in.
func TestNestedIdentity(t *testing.T) {
	variant := os.Getenv(nestedEnv)
	if variant == "" {
		t.Skip("runs inside TestUnprivileged")
	}
	if os.Geteuid() != 0 || !inUserNS() {
		t.Fatalf("euid %d, in user namespace %v: want 0 in a user namespace", os.Geteuid(), inUserNS())
	}
	b, err := os.ReadFile("/proc/self/uid_map")
	must(t, err)
	f := strings.Fields(string(b))
	if len(f) < 3 || f[0] != "0" || f[1] == "0" {
		t.Fatalf("uid_map %q: want 0 mapped to the unprivileged user", b)
	}
	if got := uidMapped(1000); got != (variant == "subids") {
		t.Errorf("uid 1000 mapped = %v in variant %s", got, variant)
	}
	if haveCap(21) && writable("/proc/sys/kernel/hostname") {
		t.Errorf("this namespace can write the host's hostname: not unprivileged")
	}
	t.Logf("uid_map: %s", strings.Join(f, " "))
}

func writable(p string) bool {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

func ensureUser(t *testing.T, name string) *user.User {
	t.Helper()
	if u, err := user.Lookup(name); err == nil {
		return u
	}
	if out, err := exec.Command("useradd", "-m", "-s", "/bin/sh", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	u, err := user.Lookup(name)
	must(t, err)
	return u
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
