package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func sh(script string) []string { return []string{"sh", "-c", script} }

// wantOut checks a RUN that succeeds and prints want on stdout.
func wantOut(want string) func(*testing.T, result) {
	return func(t *testing.T, r result) {
		t.Helper()
		if r.err != nil {
			t.Fatalf("err = %v; stderr: %s", r.err, r.stderr)
		}
		if got := strings.TrimSpace(r.stdout); got != want {
			t.Errorf("stdout = %q, want %q (stderr %q)", got, want, r.stderr)
		}
	}
}

func wantExit(code int, sig syscall.Signal) func(*testing.T, result) {
	return func(t *testing.T, r result) {
		t.Helper()
		var ee *ExitError
		if !errors.As(r.err, &ee) || ee.Code != code || ee.Signal != sig {
			t.Fatalf("err = %#v (%v), want exit %d signal %d; stderr %s", r.err, r.err, code, sig, r.stderr)
		}
	}
}

func capHex(names []string, chroot bool) string {
	m, _ := capMask(names)
	if chroot {
		m &^= 1 << 18 // CAP_SYS_CHROOT
	}
	return fmt.Sprintf("%016x", m)
}

type runCase struct {
	name   string
	only   Isolation // -1: every built-in isolation
	opts   func(o *SpecOptions)
	check  func(t *testing.T, r result)
	uid    uint64             // a uid that must be mapped for the case to make sense
	during func(t *testing.T) // runs alongside the RUN
}

func runCases(iso Isolation, listener string) []runCase {
	chroot := iso == IsolationChroot
	return []runCase{
		{name: "exit0", only: -1, opts: func(o *SpecOptions) { o.Args = []string{"true"} }, check: wantOut("")},
		{name: "exit3", only: -1, opts: func(o *SpecOptions) { o.Args = sh("exit 3") }, check: wantExit(3, 0)},
		{name: "streams", only: -1, opts: func(o *SpecOptions) { o.Args = sh("echo out; echo err >&2") },
			check: func(t *testing.T, r result) {
				if r.err != nil || r.stdout != "out\n" || r.stderr != "err\n" {
					t.Errorf("got %q %q %v", r.stdout, r.stderr, r.err)
				}
			}},
		{name: "env", only: -1, opts: func(o *SpecOptions) { o.Env = []string{"FOO=bar baz"}; o.Args = sh(`echo "$FOO:$PATH"`) },
			check: wantOut("bar baz:" + DefaultPath)},
		{name: "cwd", only: -1, opts: func(o *SpecOptions) { o.Cwd = "/home/user"; o.Args = []string{"pwd"} }, check: wantOut("/home/user")},
		{name: "user", only: -1, uid: 1000, opts: func(o *SpecOptions) {
			o.UID, o.GID, o.AdditionalGids = 1000, 1000, []uint32{2000, 3000}
			o.Args = sh("id -u; id -g; id -G; touch /tmp/x && stat -c %u:%g /tmp/x")
		}, check: wantOut("1000\n1000\n1000 2000 3000\n1000:1000")},
		{name: "root-caps", only: -1, opts: func(o *SpecOptions) {
			o.Args = sh("grep -E '^(CapEff|CapBnd|CapInh|NoNewPrivs)' /proc/self/status | tr -s '\\t' ' '")
		},
			check: wantOut(fmt.Sprintf("CapInh: 0000000000000000\nCapEff: %s\nCapBnd: %[1]s\nNoNewPrivs: 1", capHex(defaultCaps(), chroot)))},
		{name: "user-caps", only: -1, uid: 1000, opts: func(o *SpecOptions) {
			o.UID, o.GID = 1000, 1000
			o.Args = sh("grep -E '^(CapPrm|CapEff|CapBnd)' /proc/self/status | tr -s '\\t' ' '")
		}, check: wantOut(fmt.Sprintf("CapPrm: 0000000000000000\nCapEff: 0000000000000000\nCapBnd: %s", capHex(defaultCaps(), chroot)))},
		{name: "hostname", only: -1, opts: func(o *SpecOptions) { o.Hostname = "runhost"; o.Args = sh("hostname; grep -c runhost /etc/hosts") },
			check: wantOut("runhost\n1")},
		{name: "hosts-localhost", only: -1, opts: func(o *SpecOptions) {
			o.Args = sh("grep -c '^127.0.0.1.localhost$' /etc/hosts; test -e /etc/resolv.conf && echo ok")
		},
			check: wantOut("1\nok")},
		{name: "devices", only: -1, opts: func(o *SpecOptions) {
			o.Args = sh("echo x > /dev/null && head -c 5 /dev/zero | wc -c && head -c 3 /dev/urandom | wc -c && test -L /dev/fd && test -d /dev/pts && test -d /dev/shm && echo ok")
		}, check: wantOut("5\n3\nok")},
		{name: "stdin-null", only: -1, opts: func(o *SpecOptions) { o.Args = []string{"cat"} }, check: wantOut("")},
		{name: "missing-cwd", only: -1, opts: func(o *SpecOptions) { o.Cwd = "/nope"; o.Args = []string{"true"} },
			check: func(t *testing.T, r result) {
				var se *StartError
				if !errors.As(r.err, &se) || !errors.Is(r.err, fs.ErrNotExist) || !strings.Contains(r.err.Error(), "/nope") {
					t.Fatalf("err = %v, want a StartError about /nope", r.err)
				}
			}},
		{name: "missing-binary", only: -1, opts: func(o *SpecOptions) { o.Args = []string{"nosuchcmd", "x"} },
			check: func(t *testing.T, r result) {
				var se *StartError
				if !errors.As(r.err, &se) || se.Code != 127 || !errors.Is(r.err, fs.ErrNotExist) ||
					r.err.Error() != `sandbox: exec "nosuchcmd": executable file not found in $PATH` {
					t.Fatalf("err = %v, want exec not found", r.err)
				}
			}},
		{name: "not-executable", only: -1, opts: func(o *SpecOptions) { o.Args = []string{"/etc/passwd"} },
			check: func(t *testing.T, r result) {
				var se *StartError
				if !errors.As(r.err, &se) || se.Code != 126 {
					t.Fatalf("err = %v, want not executable (126)", r.err)
				}
			}},
		{name: "pid1", only: IsolationDefault, opts: func(o *SpecOptions) { o.Args = sh("echo $$; ps -o comm > /tmp/ps; cat /tmp/ps") },
			// Only our own tree is visible: sh (PID 1) and ps.
			check: wantOut("1\nCOMMAND\nsh\nps")},
		{name: "masked", only: -1, opts: func(o *SpecOptions) {
			// Masked paths that exist on the host: a file and a directory.
			o.Args = sh(`wc -c < /proc/timer_list; ls /sys/firmware | wc -l; for m in /proc/sys /sys /sys/firmware; do grep -c " $m ro," /proc/self/mountinfo; done`)
		}, check: wantOut("0\n0\n1\n1\n1")},
		{name: "net-none", only: -1, opts: func(o *SpecOptions) {
			o.Network = "none"
			o.Args = sh("ls /sys/class/net; ip -o link | wc -l; ip link show lo | grep -c UP; nc -w 2 127.0.0.1 " + listener + " </dev/null && echo reached || echo refused")
		}, check: wantOut("lo\n1\n1\nrefused")},
		{name: "net-host", only: -1, opts: func(o *SpecOptions) { o.Args = sh("nc -w 2 127.0.0.1 " + listener + " </dev/null") },
			check: wantOut("hello")},
		{name: "signal", only: IsolationDefault, opts: func(o *SpecOptions) { o.Args = []string{"sleep", "313"} },
			during: func(t *testing.T) { killByCmdline(t, "sleep", "313") }, check: wantExit(137, syscall.SIGKILL)},
		{name: "signal", only: IsolationChroot, opts: func(o *SpecOptions) { o.Args = sh("kill -9 $$") },
			check: wantExit(137, syscall.SIGKILL)},
		{name: "chroot-cannot-escape", only: IsolationChroot, opts: func(o *SpecOptions) {
			o.Args = sh("mkdir -p /tmp/e && chroot /tmp/e /bin/true 2>/dev/null && echo escaped || echo denied")
		}, check: wantOut("denied")},
	}
}

// TestRun runs the table against both built-in isolations.
func TestRun(t *testing.T) {
	needRoot(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello\n"))
			c.Close()
		}
	}()
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	for _, iso := range []Isolation{IsolationDefault, IsolationChroot} {
		t.Run(iso.String(), func(t *testing.T) {
			root := busyboxRootfs(t, true)
			sb := newSandbox(t, iso)
			for _, c := range runCases(iso, port) {
				if c.only != -1 && c.only != iso {
					continue
				}
				t.Run(c.name, func(t *testing.T) {
					if c.uid != 0 && !uidMapped(c.uid) {
						t.Skipf("uid %d is not mapped in this user namespace", c.uid)
					}
					o := SpecOptions{Rootfs: root}
					c.opts(&o)
					if c.during != nil {
						go c.during(t)
					}
					c.check(t, run(t, sb, o))
				})
			}
		})
	}
}

func TestStdin(t *testing.T) {
	needRoot(t)
	root := busyboxRootfs(t, false)
	for _, iso := range []Isolation{IsolationDefault, IsolationChroot} {
		sb := newSandbox(t, iso)
		spec, err := sb.Spec(SpecOptions{Rootfs: root, Args: []string{"cat"}})
		must(t, err)
		var out syncBuffer
		if err := sb.Run(context.Background(), spec, strings.NewReader("from stdin"), &out, &out); err != nil || out.String() != "from stdin" {
			t.Errorf("%v: got %q, %v", iso, out.String(), err)
		}
		// Nil writers discard; a closed stdout would make echo fail.
		spec, err = sb.Spec(SpecOptions{Rootfs: root, Args: sh("echo out && echo err >&2")})
		must(t, err)
		if err := sb.Run(context.Background(), spec, nil, nil, nil); err != nil {
			t.Errorf("%v with nil writers: %v", iso, err)
		}
	}
}

// TestCannotReadHost plants a file outside the rootfs and tries the usual
// ways out of it.
func TestCannotReadHost(t *testing.T) {
	needRoot(t)
	canary := filepath.Join(t.TempDir(), "canary")
	must(t, os.WriteFile(canary, []byte("HOST-SECRET\n"), 0o644))
	for _, iso := range []Isolation{IsolationDefault, IsolationChroot} {
		t.Run(iso.String(), func(t *testing.T) {
			root := busyboxRootfs(t, false)
			script := fmt.Sprintf(`cd /; for p in %[1]s /../../../..%[1]s /proc/1/root%[1]s /proc/self/root%[1]s /proc/self/cwd/../..%[1]s; do cat $p; done; ls /proc/1/root/ /proc/1/cwd/; cat /proc/*/root%[1]s; true`, canary)
			r := run(t, newSandbox(t, iso), SpecOptions{Rootfs: root, Args: sh(script)})
			if r.err != nil {
				t.Fatalf("%v: %s", r.err, r.stderr)
			}
			t.Logf("attempts:\n%s%s", r.stdout, r.stderr)
			if strings.Contains(r.stdout+r.stderr, "HOST-SECRET") {
				t.Fatalf("read the host's canary:\n%s%s", r.stdout, r.stderr)
			}
			if strings.Contains(r.stdout, filepath.Base(filepath.Dir(canary))) {
				t.Errorf("saw the host's directories:\n%s", r.stdout)
			}
		})
	}
}

// TestRootfsUnchanged: a RUN that does nothing leaves the rootfs exactly
// as it was, mountpoints, parent mtimes and all, in every isolation.
func TestRootfsUnchanged(t *testing.T) {
	needRoot(t)
	type config struct {
		iso     Isolation
		runtime string
	}
	configs := []config{{IsolationDefault, ""}, {IsolationChroot, ""}}
	for _, rt := range []string{"runc", "crun"} {
		if _, err := exec.LookPath(rt); err == nil {
			configs = append(configs, config{IsolationOCI, rt})
		}
	}
	for _, cf := range configs {
		name := cf.iso.String()
		if cf.runtime != "" {
			name = cf.runtime
		}
		for _, layout := range []string{"bare", "etc-empty", "etc-full"} {
			t.Run(name+"/"+layout, func(t *testing.T) {
				root := busyboxRootfs(t, layout == "etc-full")
				if layout == "etc-empty" {
					must(t, os.Mkdir(filepath.Join(root, "etc"), 0o755))
					time.Sleep(10 * time.Millisecond) // a changed mtime would show
				}
				data := t.TempDir()
				extra := []specs.Mount{
					{Destination: "/mnt/data/deep", Type: "bind", Source: data, Options: []string{"rbind", "ro"}},
					{Destination: "/cache", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid"}},
					{Destination: "/dev/shm/x", Type: "tmpfs", Source: "tmpfs"},
				}
				before := walk(t, root)
				sb := newSandbox(t, cf.iso)
				sb.Runtime = cf.runtime
				if r := run(t, sb, SpecOptions{Rootfs: root, Args: []string{"true"}, Mounts: extra}); r.err != nil {
					t.Fatalf("%v: %s", r.err, r.stderr)
				}
				// And on a failing path: the command does not exist.
				if r := run(t, sb, SpecOptions{Rootfs: root, Args: []string{"nosuch"}, Mounts: extra}); r.err == nil {
					t.Fatal("nosuch ran")
				}
				if d := diffWalks(before, walk(t, root)); len(d) > 0 {
					t.Errorf("rootfs changed:\n%s", strings.Join(d, "\n"))
				}
				if ents, _ := os.ReadDir(sb.StateDir); len(ents) > 1 { // oci-state may stay
					t.Errorf("state left behind: %v", ents)
				}
			})
		}
	}
}

// TestWritesThroughMounts: what a RUN writes to /etc/hosts or into an
// extra mount does not land in the rootfs; what it writes elsewhere does.
func TestWritesThroughMounts(t *testing.T) {
	needRoot(t)
	for _, iso := range []Isolation{IsolationDefault, IsolationChroot} {
		t.Run(iso.String(), func(t *testing.T) {
			root := busyboxRootfs(t, true)
			data := t.TempDir()
			must(t, os.WriteFile(filepath.Join(data, "in"), []byte("data\n"), 0o644))
			ro := t.TempDir()
			r := run(t, newSandbox(t, iso), SpecOptions{Rootfs: root, Mounts: []specs.Mount{
				{Destination: "/src", Type: "bind", Source: data, Options: []string{"rbind"}},
				{Destination: "/ro", Type: "bind", Source: ro, Options: []string{"rbind", "ro"}},
			}, Args: sh("echo evil >> /etc/hosts; cat /src/in; echo out > /src/out; touch /ro/x 2>/dev/null || echo ro; echo layer > /tmp/kept")})
			wantOut("data\nro")(t, r)
			if b, _ := os.ReadFile(filepath.Join(root, "etc/hosts")); string(b) != "10.9.9.9 original\n" {
				t.Errorf("rootfs /etc/hosts = %q", b)
			}
			if b, _ := os.ReadFile(filepath.Join(data, "out")); string(b) != "out\n" {
				t.Errorf("bind source out = %q", b)
			}
			if _, err := os.Stat(filepath.Join(root, "src")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("mountpoint /src left in rootfs: %v", err)
			}
			if b, _ := os.ReadFile(filepath.Join(root, "tmp/kept")); string(b) != "layer\n" {
				t.Errorf("RUN's own write lost: %q", b)
			}
		})
	}
}

// TestCancel: ending ctx kills the whole tree, background children too.
func TestCancel(t *testing.T) {
	needRoot(t)
	for i, iso := range []Isolation{IsolationDefault, IsolationChroot} {
		t.Run(iso.String(), func(t *testing.T) {
			root := busyboxRootfs(t, false)
			bg, fg := fmt.Sprint(1100+i), fmt.Sprint(1200+i)
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			start := time.Now()
			r := runCtx(t, ctx, newSandbox(t, iso), SpecOptions{Rootfs: root, Args: sh("sleep " + bg + " & sleep " + fg)})
			if !errors.Is(r.err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want deadline exceeded", r.err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
			time.Sleep(100 * time.Millisecond)
			for _, n := range []string{bg, fg} {
				if pid := findCmdline("sleep\x00" + n + "\x00"); pid > 0 {
					t.Errorf("sleep %s (pid %d) survived", n, pid)
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		})
	}
}

func TestDetectIsolation(t *testing.T) {
	needRoot(t)
	iso, why := DetectIsolation()
	t.Logf("%v: %s", iso, why)
	if iso != IsolationDefault {
		t.Errorf("DetectIsolation = %v (%s), want default here", iso, why)
	}
}
