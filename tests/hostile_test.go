package tests

// Hostile input, made by the tests: contexts, Dockerfiles and images that
// try to read what they must not, write what they must not, or exhaust
// memory. Each must end in a clear error or a safe result, with canaries
// outside the build untouched and the store usable afterwards.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hostileCtx writes a context: files (name → content; "->target" makes a
// symlink) and a Dockerfile.
func hostileCtx(t *testing.T, dockerfile string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	files["Dockerfile"] = dockerfile
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		var err error
		if target, ok := strings.CutPrefix(body, "->"); ok {
			err = os.Symlink(target, p)
		} else {
			err = os.WriteFile(p, []byte(body), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// canary is a file outside every build that must never change.
func canary(t *testing.T) func() {
	t.Helper()
	p := filepath.Join(env.tmp, "canary-"+strings.ReplaceAll(t.Name(), "/", "-"))
	if err := os.WriteFile(p, []byte("untouched"), 0o644); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if b, err := os.ReadFile(p); err != nil || string(b) != "untouched" {
			t.Errorf("canary %s: %q %v", p, b, err)
		}
	}
}

// storeUsable checks that a small build still works in the shared store.
func storeUsable(t *testing.T) {
	t.Helper()
	dir := hostileCtx(t, "FROM localhost/busybox\nRUN echo ok > /ok\n", map[string]string{})
	if _, se, code := builderSplit(nil, "bud", "-q", dir); code != 0 {
		t.Fatalf("the store is not usable after the hostile build: exit %d\n%s", code, se)
	}
}

// expectFailure builds dir and wants exit code code and every want in stderr.
func expectFailure(t *testing.T, dir string, code int, wants ...string) string {
	t.Helper()
	_, se, got := builderSplit(nil, "bud", "-q", dir)
	if got != code {
		t.Fatalf("exit %d, want %d\n%s", got, code, se)
	}
	for _, w := range wants {
		if !strings.Contains(se, w) {
			t.Errorf("stderr lacks %q:\n%s", w, se)
		}
	}
	return se
}

// Hole 1: a symlink never brings an ignored file or directory into a COPY.
func TestHostileIgnoreBypass(t *testing.T) {
	check := canary(t)
	files := map[string]string{
		".dockerignore": ".env\nsecret\n", ".env": "TOKEN=s3cret", "secret/key": "private",
		"envlink": "->.env", "dirlink": "->secret", "abslink": "->/secret/key", "app.txt": "app",
	}
	for _, tc := range []struct{ name, copy string }{
		{"link to an ignored file", "COPY envlink /x"},
		{"link to an ignored directory", "COPY dirlink/ /d/"},
		{"absolute link into an ignored directory", "COPY abslink /x"},
		{"ignored file named directly", "COPY .env /x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := hostileCtx(t, "FROM scratch\n"+tc.copy+"\n", copyMap(files))
			expectFailure(t, dir, 1, "Dockerfile:2", "excluded by .dockerignore")
		})
	}
	t.Run("COPY . keeps links as links and nothing ignored", func(t *testing.T) {
		dir := hostileCtx(t, "FROM scratch\nCOPY . /ctx/\n", copyMap(files))
		out := filepath.Join(t.TempDir(), "rootfs")
		if _, se, code := builderSplit(nil, "bud", "-q", "-o", "type=local,dest="+out, dir); code != 0 {
			t.Fatalf("exit %d\n%s", code, se)
		}
		for _, gone := range []string{"ctx/.env", "ctx/secret", "ctx/secret/key"} {
			if _, err := os.Lstat(filepath.Join(out, gone)); err == nil {
				t.Errorf("%s was copied", gone)
			}
		}
		if l, err := os.Readlink(filepath.Join(out, "ctx/envlink")); err != nil || l != ".env" {
			t.Errorf("ctx/envlink: %q %v (want the link itself)", l, err)
		}
	})
	check()
}

func copyMap(m map[string]string) map[string]string {
	c := map[string]string{}
	for k, v := range m {
		c[k] = v
	}
	return c
}

// maxRSS runs builder under GNU time and returns the exit code, stderr and
// the peak resident set (KiB) of builder and the processes it waited for.
func maxRSS(t *testing.T, args ...string) (int, string, int) {
	t.Helper()
	report := filepath.Join(t.TempDir(), "time")
	full := append([]string{"-f", "%M", "-o", report, env.bin, "--root", env.root, "--runroot", env.runroot, "--storage-driver", "vfs"}, args...)
	cmd := exec.Command("/usr/bin/time", full...)
	var se strings.Builder
	cmd.Stderr = &se
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	kib, err := strconv.Atoi(lines[len(lines)-1])
	if err != nil {
		t.Fatalf("GNU time said %q", b)
	}
	return code, se.String(), kib
}

// Hole 2: Dockerfile bombs end in a clear error or a cheap build, never in
// gigabytes.
func TestHostileDockerfileBombs(t *testing.T) {
	const limitKiB = 256 << 10
	var labels strings.Builder
	labels.WriteString("FROM scratch\n")
	for i := range 20000 {
		fmt.Fprintf(&labels, "LABEL key%d=value%d\n", i, i)
	}
	var laughs strings.Builder
	laughs.WriteString("FROM scratch\nARG a0=0123456789\n")
	for i := 1; i <= 45; i++ {
		fmt.Fprintf(&laughs, "ARG a%d=${a%d}${a%d}\n", i, i-1, i-1)
	}
	laughs.WriteString("RUN echo $a45\n")
	huge := "FROM scratch\n" + strings.Repeat("# a comment line to make the Dockerfile large\n", 30000)
	for _, tc := range []struct {
		name, dockerfile string
		code             int
		want             string
	}{
		{"20,000 labels", labels.String(), 0, ""},
		{"billion laughs", laughs.String(), 1, "Dockerfile:19: expanding \"${a16}${a16}\" would make a word over the 1.0 MiB limit"},
		{"over 1 MiB", huge, 1, "the Dockerfile is larger than 1.0 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := hostileCtx(t, tc.dockerfile, map[string]string{})
			code, se, kib := maxRSS(t, "bud", "-q", "-t", "localhost/bomb", dir)
			if code != tc.code || !strings.Contains(se, tc.want) {
				t.Fatalf("exit %d, want %d with %q:\n%.2000s", code, tc.code, tc.want, se)
			}
			t.Logf("peak RSS %d MiB", kib>>10)
			if kib > limitKiB {
				t.Errorf("peak RSS %d MiB, over 256 MiB", kib>>10)
			}
			if code == 0 {
				so, se, c := builderSplit(nil, "inspect", "--format", "{{len .Config.Config.Labels}}", "localhost/bomb")
				if c != 0 || strings.TrimSpace(so) != "20000" {
					t.Errorf("labels: %q %s", so, se)
				}
			}
		})
	}
	storeUsable(t)
}

// Hole 3: a step cannot ship a whiteout-named file.
func TestHostileWhiteoutNames(t *testing.T) {
	for _, name := range []string{"/.wh.etc", "/usr/.wh..wh..opq"} {
		t.Run(name, func(t *testing.T) {
			dir := hostileCtx(t, "FROM localhost/busybox\nRUN mkdir -p /usr && touch "+name+"\n", map[string]string{})
			expectFailure(t, dir, 1, "Dockerfile:2", name+": names starting with .wh. are reserved")
		})
	}
	t.Run("from the context", func(t *testing.T) {
		dir := hostileCtx(t, "FROM scratch\nCOPY ctx /\n", map[string]string{"ctx/.wh.etc": ""})
		expectFailure(t, dir, 1, "Dockerfile:2", "/.wh.etc: names starting with .wh. are reserved")
	})
	storeUsable(t)
}

// Holes 8 and 12: ids are the ids the Dockerfile wrote, never truncated and
// never looked up as names.
func TestHostileUserIDs(t *testing.T) {
	t.Run("out of range", func(t *testing.T) {
		dir := hostileCtx(t, "FROM localhost/busybox\nUSER 4294967296\nRUN id\n", map[string]string{})
		expectFailure(t, dir, 1, "Dockerfile:3", "uids and gids must be in range")
	})
	t.Run("a user named 1000", func(t *testing.T) {
		dir := hostileCtx(t, `FROM localhost/busybox
RUN echo '1000:x:0:0:impostor:/root:/bin/sh' >> /etc/passwd
USER 1000
RUN id -u > /tmp/uid
`, map[string]string{})
		out := filepath.Join(t.TempDir(), "rootfs")
		if _, se, code := builderSplit(nil, "bud", "-q", "-o", "type=local,dest="+out, dir); code != 0 {
			t.Fatalf("exit %d\n%s", code, se)
		}
		if b, _ := os.ReadFile(filepath.Join(out, "tmp/uid")); strings.TrimSpace(string(b)) != "1000" {
			t.Errorf("USER 1000 ran as uid %q", b)
		}
	})
}

// Hole 10: a password in an ADD URL is never printed or recorded.
func TestHostileURLCredentials(t *testing.T) {
	withCreds := strings.Replace(env.url, "http://", "http://builder:hunter2@", 1)
	t.Run("error", func(t *testing.T) {
		dir := hostileCtx(t, "FROM scratch\nADD "+withCreds+"/files/missing /x\n", map[string]string{})
		se := expectFailure(t, dir, 1, "Dockerfile:2", "builder:xxxxx@")
		if strings.Contains(se, "hunter2") {
			t.Errorf("the password is in the error:\n%s", se)
		}
	})
	t.Run("history", func(t *testing.T) {
		dir := hostileCtx(t, "FROM scratch\nADD "+withCreds+"/files/hello.txt /x\n", map[string]string{})
		so, se, code := builderSplit(nil, "bud", "-t", "localhost/creds", dir)
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, se)
		}
		hist, _, _ := builderSplit(nil, "inspect", "--format", "{{range .Config.History}}{{.CreatedBy}}{{end}}", "localhost/creds")
		for what, s := range map[string]string{"progress": so + se, "history": hist} {
			if strings.Contains(s, "hunter2") {
				t.Errorf("the password is in the %s:\n%s", what, s)
			}
		}
		if !strings.Contains(hist, "builder:xxxxx@") {
			t.Errorf("history %q", hist)
		}
	})
}

// Hole 14: the host gets files from --output type=local, never devices,
// setuid bits or file capabilities.
func TestHostileLocalOutput(t *testing.T) {
	dir := hostileCtx(t, `FROM localhost/busybox
RUN cp /bin/busybox /suid && chmod 4755 /suid && (mknod /null c 1 3 || true) && ls -l /null /suid
`, map[string]string{})
	out := filepath.Join(t.TempDir(), "rootfs")
	if _, se, code := builderSplit(nil, "bud", "-o", "type=local,dest="+out, dir); code != 0 {
		t.Fatalf("exit %d\n%s", code, se)
	}
	fi, err := os.Lstat(filepath.Join(out, "suid"))
	if err != nil || fi.Mode()&os.ModeSetuid != 0 {
		t.Errorf("suid: %v %v", fi, err)
	}
	if fi, err := os.Lstat(filepath.Join(out, "null")); err == nil && fi.Mode()&os.ModeDevice != 0 {
		t.Errorf("a device node reached the host: %v", fi.Mode())
	}
}

// Hole 11: an image whose /dev is a symlink to a host directory gets a
// /dev of the sandbox's own for its RUN, and nothing is created through
// the link, on the host or in the image.
func TestHostileSymlinkedDev(t *testing.T) {
	hostDir := filepath.Join(env.tmp, "host-dev-canary-"+strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(t.TempDir(), "devlink.tar")
	mustRun(t, "sh", "-c", "cd "+t.TempDir()+" && ln -s "+hostDir+" dev && tar cf "+tarball+" dev")
	dir := hostileCtx(t, `FROM localhost/busybox AS base
FROM scratch
COPY --from=base / /
ADD devlink.tar /
RUN test -c /dev/null && test -L /dev/fd && echo ran > /ran
`, map[string]string{})
	data, err := os.ReadFile(tarball)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "devlink.tar"), data, 0o644)
	out := filepath.Join(t.TempDir(), "rootfs")
	if _, se, code := builderSplit(nil, "bud", "-o", "type=local,dest="+out, dir); code != 0 {
		t.Fatalf("exit %d\n%s", code, se)
	}
	if ents, err := os.ReadDir(hostDir); err != nil || len(ents) != 0 {
		t.Errorf("the host directory behind the image's /dev link got %v (%v)", ents, err)
	}
	if l, err := os.Readlink(filepath.Join(out, "dev")); err != nil || l != hostDir {
		t.Errorf("the image's /dev link: %q %v", l, err)
	}
	if _, err := os.Stat(filepath.Join(out, "ran")); err != nil {
		t.Errorf("the RUN did not run: %v", err)
	}
}

// Hole 9: secrets live only on a tmpfs, through kill -9 as well, and with
// --runtime the bundle holding a RUN's environment does too.
func TestHostileSecretsOffDisk(t *testing.T) {
	secret := fmt.Sprintf("hunter2-%d-secret", os.Getpid())
	secretFile := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(secretFile, []byte(secret), 0o600)
	t.Run("on tmpfs", func(t *testing.T) {
		dir := hostileCtx(t, `FROM localhost/busybox
RUN --mount=type=secret,id=tok grep ' /run/secrets/tok ' /proc/self/mountinfo | grep -q ' - tmpfs ' && test "$(cat /run/secrets/tok)" = `+secret+`
`, map[string]string{})
		if _, se, code := builderSplit(nil, "bud", "-q", "--secret", "id=tok,src="+secretFile, dir); code != 0 {
			t.Fatalf("exit %d\n%s", code, se)
		}
	})
	for _, tc := range []struct {
		name  string
		mount string
		args  []string
	}{
		{"file secret, killed", "--mount=type=secret,id=tok", nil},
		{"env secret with --runtime runc, killed", "--mount=type=secret,id=tok,env=TOK", []string{"--runtime", "runc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "store")
			dir := hostileCtx(t, "FROM "+env.baseOCI+"\nRUN "+tc.mount+" sleep 31337\n", map[string]string{})
			args := append([]string{"--root", root, "--runroot", root + "-run", "--storage-driver", "vfs", "bud", "--secret", "id=tok,src=" + secretFile}, tc.args...)
			cmd := exec.Command(env.bin, append(args, dir)...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			var se strings.Builder
			cmd.Stdout, cmd.Stderr = &se, &se
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return findProcess("sleep\x0031337") > 0 }, "the RUN to start\n"+se.String())
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
			if pid := findProcess("sleep\x0031337"); pid > 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			for _, d := range []string{root, root + "-run"} {
				if out, _ := exec.Command("grep", "-rl", secret, d).Output(); len(out) > 0 {
					t.Errorf("the secret is on disk after kill -9:\n%s", out)
				}
			}
		})
	}
}

// waitFor polls cond for up to 30 s.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for range 300 {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// findProcess returns the pid of a process whose command line starts with
// cmdline (NUL-separated), or 0.
func findProcess(cmdline string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.HasPrefix(string(b), cmdline) {
			return pid
		}
	}
	return 0
}

// Hole 4: RUN's default network is its own (user-mode networking), not
// the host's: the host's loopback services and abstract unix sockets are
// out of reach. The host's network is the user's explicit choice, and a
// Dockerfile alone can neither take it nor the privileges of
// --security=insecure.
func TestHostileNetwork(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("host-service\n"))
			c.Close()
		}
	}()
	abstract := fmt.Sprintf("builder-test-%d", os.Getpid())
	ul, err := net.Listen("unix", "@"+abstract)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	probe := fmt.Sprintf(`(nc -w 2 127.0.0.1 %d </dev/null | grep -q host-service && echo HOST-TCP) || echo no-host-tcp; grep -q %s /proc/net/unix && echo HOST-ABSTRACT || echo no-host-abstract; ip addr | grep -q 10.0.2.100 && echo USER-MODE-NET || true`, port, abstract)
	for _, tc := range []struct {
		name, run string
		flags     []string
		code      int
		want      []string
	}{
		{"default", "RUN " + probe, nil, 0, []string{"| no-host-tcp", "| no-host-abstract", "| USER-MODE-NET"}},
		{"--network=host", "RUN " + probe, []string{"--network", "host"}, 0, []string{"| HOST-TCP", "| HOST-ABSTRACT"}},
		{"--network=none", "RUN " + probe, []string{"--network", "none"}, 0, []string{"| no-host-tcp", "| no-host-abstract"}},
		{"RUN --network=host without --allow", "RUN --network=host " + probe, nil, 1, []string{"Dockerfile:2", "needs --allow network.host"}},
		{"RUN --network=host under --network=none", "RUN --network=host " + probe, []string{"--network", "none"}, 1, []string{"needs --allow network.host"}},
		{"RUN --network=host allowed", "RUN --network=host " + probe, []string{"--allow", "network.host"}, 0, []string{"| HOST-TCP"}},
		{"RUN --security=insecure without --allow", "RUN --security=insecure mount -t tmpfs tmpfs /mnt", nil, 1, []string{"Dockerfile:2", "needs --allow security.insecure"}},
		{"RUN --security=insecure allowed", "RUN --security=insecure mkdir -p /mnt/t && mount -t tmpfs tmpfs /mnt/t && grep -q 'CapEff:.*ffff' /proc/self/status && echo PRIVILEGED", []string{"--allow", "security.insecure"}, 0, []string{"| PRIVILEGED"}},
		{"plain RUN is not privileged", "RUN mkdir -p /mnt/t && mount -t tmpfs tmpfs /mnt/t || echo UNPRIVILEGED", nil, 0, []string{"| UNPRIVILEGED"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := hostileCtx(t, "FROM localhost/busybox\n"+tc.run+"\n", map[string]string{})
			args := append(append([]string{"bud", "--layers=false"}, tc.flags...), dir)
			so, se, code := builderSplit(nil, args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.code, so, se)
			}
			for _, w := range tc.want {
				if !strings.Contains(so+se, w) {
					t.Errorf("output lacks %q:\n%s%s", w, so, se)
				}
			}
			if tc.code == 0 && !strings.Contains(tc.run, "network=host") && !slices.Contains(tc.flags, "host") && strings.Contains(so, "| HOST-TCP") {
				t.Errorf("the RUN reached the host's loopback:\n%s", so)
			}
		})
	}
}

// Without user-mode networking (no slirp4netns here), RUN steps get no
// network rather than the host's, and the build says so.
func TestNetworkFallbackSaid(t *testing.T) {
	dir := hostileCtx(t, "FROM localhost/busybox\nRUN ip addr | grep -c inet\n", map[string]string{})
	full := []string{"--root", env.root, "--runroot", env.runroot, "--storage-driver", "vfs", "bud", "--layers=false", dir}
	cmd := exec.Command(env.bin, full...)
	cmd.Env = append(os.Environ(), "PATH=/nonexistent")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), "RUN steps get no network") || !strings.Contains(string(out), "slirp4netns is not installed") {
		t.Errorf("the fallback was not said:\n%s", out)
	}
	if !strings.Contains(string(out), "| 2") { // lo's two addresses: nothing else
		t.Errorf("the RUN saw more than loopback:\n%s", out)
	}
}
