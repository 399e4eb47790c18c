package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.podman.io/storage/pkg/reexec"
)

// nestedEnv is set when the test binary runs again as an unprivileged
// user inside `unshare --user` (see TestUnprivileged); its value names the
// id mapping.
const nestedEnv = "BUILDER_SANDBOX_TEST_USERNS"

func TestMain(m *testing.M) {
	if reexec.Init() {
		return // a sandbox child; it execs or exits on its own
	}
	os.Exit(m.Run())
}

// needRoot skips unless we are uid 0, as root or in a user namespace.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs uid 0 (run as root; TestUnprivileged covers the user-namespace path)")
	}
}

// busyboxRootfs builds a minimal rootfs: /bin/busybox with a symlink per
// applet, /tmp and /home/user. With etc, /etc/hosts and /etc/passwd too.
func busyboxRootfs(t *testing.T, etc bool) string {
	t.Helper()
	root := t.TempDir()
	bin := filepath.Join(root, "bin")
	must(t, os.MkdirAll(bin, 0o755))
	data, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static is needed (hack/install-deps.sh installs it): %v", err)
	}
	must(t, os.WriteFile(filepath.Join(bin, "busybox"), data, 0o755))
	out, err := exec.Command("/bin/busybox", "--list").Output()
	must(t, err)
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" {
			must(t, os.Symlink("busybox", filepath.Join(bin, a)))
		}
	}
	must(t, os.MkdirAll(filepath.Join(root, "tmp"), 0o1777))
	must(t, os.Chmod(filepath.Join(root, "tmp"), 0o1777))
	must(t, os.MkdirAll(filepath.Join(root, "home/user"), 0o755))
	if etc {
		must(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
		must(t, os.WriteFile(filepath.Join(root, "etc/hosts"), []byte("10.9.9.9 original\n"), 0o644))
		must(t, os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644))
	}
	return root
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func newSandbox(t *testing.T, iso Isolation) *Sandbox {
	return &Sandbox{Isolation: iso, StateDir: t.TempDir(),
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// result is what one RUN printed and returned.
type result struct {
	stdout, stderr string
	err            error
}

// run makes a spec with o (rootfs given) and runs it.
func run(t *testing.T, sb *Sandbox, o SpecOptions) result {
	t.Helper()
	return runCtx(t, context.Background(), sb, o)
}

func runCtx(t *testing.T, ctx context.Context, sb *Sandbox, o SpecOptions) result {
	t.Helper()
	spec, err := sb.Spec(o)
	if err != nil {
		t.Fatalf("Spec: %v", err)
	}
	var out, errb syncBuffer
	err = sb.Run(ctx, spec, nil, &out, &errb)
	return result{out.String(), errb.String(), err}
}

// syncBuffer is a bytes.Buffer safe for the copy goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// walk lists every entry of root with its type, mode, owner, size, mtime
// and link target: two equal walks mean an unchanged tree.
func walk(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		v := fmt.Sprintf("%v uid=%d gid=%d size=%d mtime=%d.%09d", fi.Mode(), st.Uid, st.Gid, fi.Size(), st.Mtim.Sec, st.Mtim.Nsec)
		if fi.Mode()&fs.ModeSymlink != 0 {
			l, _ := os.Readlink(p)
			v += " -> " + l
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = v
		return nil
	})
	must(t, err)
	return out
}

func diffWalks(before, after map[string]string) []string {
	var d []string
	for k, v := range before {
		if a, ok := after[k]; !ok {
			d = append(d, "removed "+k)
		} else if a != v {
			d = append(d, fmt.Sprintf("changed %s: %s => %s", k, v, a))
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			d = append(d, "added "+k)
		}
	}
	return d
}

// killByCmdline SIGKILLs the process whose argv is exactly args, once it
// shows up, from outside the sandbox.
func killByCmdline(t *testing.T, args ...string) {
	want := strings.Join(args, "\x00") + "\x00"
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if pid := findCmdline(want); pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("process %q never appeared", args)
}

func findCmdline(want string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && string(b) == want {
			return pid
		}
	}
	return 0
}

// uidMapped reports whether uid exists in our user namespace.
func uidMapped(uid uint64) bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(b), "\n") {
		var in, out, n uint64
		if _, err := fmt.Sscan(line, &in, &out, &n); err == nil && uid >= in && uid < in+n {
			return true
		}
	}
	return false
}
