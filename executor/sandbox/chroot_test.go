package sandbox

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// noAdminEnv marks the test binary re-run without CAP_SYS_ADMIN.
const noAdminEnv = "BUILDER_SANDBOX_TEST_NOADMIN"

// TestChrootWithoutSysAdmin re-runs TestChrootNoMounts as root without
// CAP_SYS_ADMIN, as in a pod that forbids namespaces and mounts.
func TestChrootWithoutSysAdmin(t *testing.T) {
	if os.Getenv(noAdminEnv) != "" || os.Getenv(nestedEnv) != "" {
		t.Skip("already inside")
	}
	needRoot(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) is needed: %v", err)
	}
	self, err := os.Executable()
	must(t, err)
	cmd := exec.Command("setpriv", "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin", "--",
		self, "-test.run", "^TestChrootNoMounts$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), noAdminEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestChrootNoMounts")) || bytes.Contains(out, []byte("--- SKIP")) {
		t.Fatalf("without CAP_SYS_ADMIN: %v\n%s", err, out)
	}
}

// TestChrootNoMounts: chroot isolation with no mount namespace still runs
// RUNs, gives them a hosts and resolv.conf copy when the image has none,
// and leaves the rootfs as it was.
func TestChrootNoMounts(t *testing.T) {
	if os.Getenv(noAdminEnv) == "" {
		t.Skip("runs inside TestChrootWithoutSysAdmin")
	}
	if haveCap(unix.CAP_SYS_ADMIN) {
		t.Fatal("still has CAP_SYS_ADMIN")
	}
	if iso, why := DetectIsolation(); iso != IsolationChroot {
		t.Errorf("DetectIsolation = %v (%s), want chroot without CAP_SYS_ADMIN", iso, why)
	} else {
		t.Log(why)
	}
	root := busyboxRootfs(t, false)
	var logs syncBuffer
	sb := &Sandbox{Isolation: IsolationChroot, StateDir: t.TempDir(), Log: slog.New(slog.NewTextHandler(&logs, nil))}
	canary := filepath.Join(t.TempDir(), "canary")
	must(t, os.WriteFile(canary, []byte("HOST-SECRET\n"), 0o644))

	before := walk(t, root)
	cases := []struct {
		name  string
		opts  func(o *SpecOptions)
		check func(*testing.T, result)
	}{
		{"true", func(o *SpecOptions) { o.Args = []string{"true"} }, wantOut("")},
		{"exit3", func(o *SpecOptions) { o.Args = sh("exit 3") }, wantExit(3, 0)},
		{"env-cwd", func(o *SpecOptions) { o.Env, o.Cwd, o.Args = []string{"FOO=x"}, "/home/user", sh("echo $FOO; pwd") }, wantOut("x\n/home/user")},
		{"user", func(o *SpecOptions) {
			o.UID, o.GID, o.AdditionalGids, o.Args = 1000, 1000, []uint32{2000}, sh("id -u; id -G")
		}, wantOut("1000\n1000 2000")},
		{"hosts-copied", func(o *SpecOptions) {
			o.Args = sh("grep -c '^127.0.0.1.localhost$' /etc/hosts; test -f /etc/resolv.conf && echo resolv; echo evil >> /etc/hosts")
		}, wantOut("1\nresolv")},
		{"missing-binary", func(o *SpecOptions) { o.Args = []string{"nosuch"} }, func(t *testing.T, r result) {
			var se *StartError
			if !errors.As(r.err, &se) || se.Code != 127 {
				t.Fatalf("err = %v", r.err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := SpecOptions{Rootfs: root}
			c.opts(&o)
			c.check(t, run(t, sb, o))
		})
	}
	// None of the above wrote to the rootfs, and neither did the sandbox.
	if d := diffWalks(before, walk(t, root)); len(d) > 0 {
		t.Errorf("rootfs changed:\n%s", strings.Join(d, "\n"))
	}
	wantOut("")(t, run(t, sb, SpecOptions{Rootfs: root,
		Args: sh("cat " + canary + " /../.." + canary + " 2>/dev/null; mkdir -p /tmp/e && chroot /tmp/e /bin/true 2>/dev/null && echo escaped; true")}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if r := runCtx(t, ctx, sb, SpecOptions{Rootfs: root, Args: sh("sleep 1301 & sleep 1302")}); !errors.Is(r.err, context.DeadlineExceeded) {
		t.Errorf("cancel: %v", r.err)
	}
	time.Sleep(100 * time.Millisecond)
	if findCmdline("sleep\x001301\x00") > 0 || findCmdline("sleep\x001302\x00") > 0 {
		t.Error("cancel left a sleep running")
	}
	// The default isolation cannot work here, and says what to do.
	r := run(t, newSandbox(t, IsolationDefault), SpecOptions{Rootfs: root, Args: []string{"true"}})
	var se *StartError
	if !errors.As(r.err, &se) || !errors.Is(r.err, unix.EPERM) || !strings.Contains(r.err.Error(), "use chroot isolation") {
		t.Errorf("default isolation without CAP_SYS_ADMIN: %v", r.err)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings about skipped mounts, want 1:\n%s", n, logs.String())
	}
	t.Log(logs.String())
}
