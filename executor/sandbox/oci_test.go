package sandbox

import (
	"context"
	"errors"
	"io/fs"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestOCI hands the same specs to runc and crun (whichever are installed:
// the project installs both, so CI runs both).
func TestOCI(t *testing.T) {
	needRoot(t)
	ran := 0
	for _, rt := range []string{"runc", "crun"} {
		if _, err := exec.LookPath(rt); err != nil {
			t.Logf("%s not installed", rt)
			continue
		}
		ran++
		t.Run(rt, func(t *testing.T) {
			root := busyboxRootfs(t, true)
			sb := newSandbox(t, IsolationOCI)
			sb.Runtime = rt
			cases := []struct {
				name  string
				opts  func(o *SpecOptions)
				check func(*testing.T, result)
				uid   uint64
			}{
				{"echo", func(o *SpecOptions) { o.Args = []string{"echo", "hi"} }, wantOut("hi"), 0},
				{"exit3", func(o *SpecOptions) { o.Args = sh("echo err >&2; exit 3") }, func(t *testing.T, r result) {
					wantExit(3, 0)(t, r)
					if r.stderr != "err\n" {
						t.Errorf("stderr = %q", r.stderr)
					}
				}, 0},
				{"pid1-hostname-cwd", func(o *SpecOptions) {
					o.Hostname, o.Cwd, o.Args = "ocihost", "/home/user", sh("echo $$; hostname; pwd")
				}, wantOut("1\nocihost\n/home/user"), 0},
				{"user", func(o *SpecOptions) {
					o.UID, o.GID, o.AdditionalGids, o.Args = 1000, 1000, []uint32{2000}, sh("id -u; id -G")
				}, wantOut("1000\n1000 2000"), 1000},
				{"net-none", func(o *SpecOptions) { o.Network = "none"; o.Args = sh("ls /sys/class/net") }, wantOut("lo"), 0},
				{"hosts", func(o *SpecOptions) { o.Args = sh("echo x >> /etc/hosts; grep -c localhost /etc/hosts") }, wantOut("2"), 0},
				{"missing-binary", func(o *SpecOptions) { o.Args = []string{"nosuchcmd"} }, func(t *testing.T, r result) {
					var se *StartError
					if !errors.As(r.err, &se) || se.Code != 127 || !errors.Is(r.err, fs.ErrNotExist) {
						t.Fatalf("err = %v", r.err)
					}
				}, 0},
				{"missing-cwd", func(o *SpecOptions) { o.Cwd, o.Args = "/nope", []string{"true"} }, func(t *testing.T, r result) {
					if !errors.Is(r.err, fs.ErrNotExist) || !strings.Contains(r.err.Error(), "working directory /nope") {
						t.Fatalf("err = %v", r.err)
					}
				}, 0},
			}
			t.Run("cancel", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
				defer cancel()
				n := map[string]string{"runc": "1401", "crun": "1402"}[rt]
				r := runCtx(t, ctx, sb, SpecOptions{Rootfs: root, Args: sh("sleep " + n + " & sleep " + n)})
				if !errors.Is(r.err, context.DeadlineExceeded) {
					t.Fatalf("err = %v", r.err)
				}
				time.Sleep(100 * time.Millisecond)
				if pid := findCmdline("sleep\x00" + n + "\x00"); pid > 0 {
					t.Errorf("sleep %s (pid %d) survived", n, pid)
				}
			})
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					if c.uid != 0 && !uidMapped(c.uid) {
						t.Skipf("uid %d is not mapped in this user namespace", c.uid)
					}
					o := SpecOptions{Rootfs: root}
					c.opts(&o)
					c.check(t, run(t, sb, o))
				})
			}
		})
	}
	if ran == 0 {
		t.Fatal("neither runc nor crun is installed (hack/install-deps.sh installs both)")
	}
}
