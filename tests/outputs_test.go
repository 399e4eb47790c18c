package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReproducible builds the same Dockerfile from two copies of its context
// (different paths, different mtimes) with the same timestamp: the image
// digests must be equal.
func TestReproducible(t *testing.T) {
	src := filepath.Join(env.repo, "testdata", "dockerfiles", "copy-chown")
	var digests []string
	for i := range 2 {
		ctx := filepath.Join(t.TempDir(), "ctx")
		mustRun(t, "cp", "-r", src, ctx)
		if i == 1 {
			mustRun(t, "touch", "-d", "2031-01-01", filepath.Join(ctx, "f1")) // newer than the epoch: clamped
		}
		out := filepath.Join(t.TempDir(), "oci")
		if o, err := builder([]string{"SOURCE_DATE_EPOCH=1700000000"}, "bud", "-q", "-o", "type=oci,dest="+out, ctx); err != nil {
			t.Fatalf("build %d: %v\n%s", i, err, o)
		}
		digests = append(digests, readLayout(t, out).mdigest)
	}
	if digests[0] != digests[1] {
		t.Errorf("same inputs, different digests: %s vs %s", digests[0], digests[1])
	}
	// --timestamp gives the same result as SOURCE_DATE_EPOCH.
	out := filepath.Join(t.TempDir(), "oci")
	if o, err := builder(nil, "bud", "-q", "--timestamp", "1700000000", "-o", "type=oci,dest="+out, src); err != nil {
		t.Fatalf("build: %v\n%s", err, o)
	}
	if d := readLayout(t, out).mdigest; d != digests[0] {
		t.Errorf("--timestamp digest %s != SOURCE_DATE_EPOCH digest %s", d, digests[0])
	}
}

// TestDockerArchiveAndFormat checks docker-archive output and --format docker
// with skopeo.
func TestDockerArchiveAndFormat(t *testing.T) {
	ctx := filepath.Join(env.repo, "testdata", "dockerfiles", "meta-all")
	archive := filepath.Join(t.TempDir(), "img.tar")
	if o, err := builder(nil, "bud", "-q", "--format", "docker", "-t", "localhost/archive-test:v1",
		"-o", "type=docker-archive,dest="+archive, ctx); err != nil {
		t.Fatalf("build: %v\n%s", err, o)
	}
	raw := mustRun(t, "skopeo", "inspect", "--raw", "docker-archive:"+archive)
	if !strings.Contains(raw, "application/vnd.docker.distribution.manifest.v2+json") {
		t.Errorf("docker-archive manifest is not docker v2s2:\n%s", raw)
	}
	var info struct {
		Labels map[string]string
		Layers []string
	}
	if err := json.Unmarshal([]byte(mustRun(t, "skopeo", "inspect", "docker-archive:"+archive)), &info); err != nil {
		t.Fatal(err)
	}
	if info.Labels["com.example.a"] != "x" || len(info.Layers) == 0 {
		t.Errorf("docker-archive inspect: labels %v layers %v", info.Labels, info.Layers)
	}
	// --format docker keeps HEALTHCHECK in the config.
	cfg := mustRun(t, "skopeo", "inspect", "--raw", "--config", "docker-archive:"+archive)
	if !strings.Contains(cfg, "Healthcheck") {
		t.Errorf("config lost Healthcheck:\n%s", cfg)
	}
}

// TestLocalOutput exports the file tree.
func TestLocalOutput(t *testing.T) {
	ctx := filepath.Join(env.repo, "testdata", "dockerfiles", "scratch-copy")
	dest := filepath.Join(t.TempDir(), "rootfs")
	if o, err := builder(nil, "bud", "-q", "-o", "type=local,dest="+dest, ctx); err != nil {
		t.Fatalf("build: %v\n%s", err, o)
	}
	for path, want := range map[string]string{"hello.txt": "hello\n", "dir/a.txt": "a\n", "dir/sub/deep.txt": "deep\n", "renamed.txt": "deep\n"} {
		got, err := os.ReadFile(filepath.Join(dest, path))
		if err != nil || string(got) != want {
			t.Errorf("%s: got %q, %v; want %q", path, got, err, want)
		}
	}
}

// TestDockerfileFromStdin reads the Dockerfile from -f - and errors from it
// still name the Dockerfile line.
func TestDockerfileFromStdin(t *testing.T) {
	ctx := filepath.Join(env.repo, "testdata", "dockerfiles", "stdin-dockerfile-context")
	out := filepath.Join(t.TempDir(), "oci")
	_, se, code := builderSplit([]byte("FROM scratch\nCOPY ctx.txt /stdin.txt\n"), "bud", "-q", "-f", "-", "-o", "type=oci,dest="+out, ctx)
	if code != 0 {
		t.Fatalf("build from stdin: exit %d\n%s", code, se)
	}
	l := readLayout(t, out)
	if es := l.layerEntries(t, 0); len(es) != 1 || es[0].name != "stdin.txt" {
		t.Errorf("layer entries: %+v", es)
	}
	_, se, code = builderSplit([]byte("FROM scratch\n\nCOPY missing.txt /\n"), "bud", "-q", "-f", "-", ctx)
	if code != 1 || !strings.Contains(se, "Dockerfile:3:") {
		t.Errorf("want exit 1 naming Dockerfile:3, got %d:\n%s", code, se)
	}
}

// TestHardlinks: a hard-linked pair in the context stays a hard link in the
// layer (git cannot store hard links, so the context is made here).
func TestHardlinks(t *testing.T) {
	ctx := t.TempDir()
	os.MkdirAll(filepath.Join(ctx, "tree"), 0o755)
	os.WriteFile(filepath.Join(ctx, "tree", "a"), []byte("same\n"), 0o644)
	if err := os.Link(filepath.Join(ctx, "tree", "a"), filepath.Join(ctx, "tree", "b")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM scratch\nCOPY tree/ /t/\n"), 0o644)
	out := filepath.Join(t.TempDir(), "oci")
	if o, err := builder(nil, "bud", "-q", "--timestamp", "0", "-o", "type=oci,dest="+out, ctx); err != nil {
		t.Fatalf("build: %v\n%s", err, o)
	}
	var lines []string
	for _, e := range readLayout(t, out).layerEntries(t, 0) {
		lines = append(lines, e.line)
	}
	got := strings.Join(lines, "\n")
	if !strings.Contains(got, "h 00644 0:0 0 t/b -> t/a") {
		t.Errorf("t/b is not a hard link to t/a:\n%s", got)
	}
}

// TestStoreCommands exercises images, tag, inspect and rmi on the store.
func TestStoreCommands(t *testing.T) {
	ctx := filepath.Join(env.repo, "testdata", "dockerfiles", "scratch-copy")
	idfile := filepath.Join(t.TempDir(), "iid")
	so, se, code := builderSplit(nil, "bud", "-q", "--iidfile", idfile, "-t", "localhost/store-test:v1", ctx)
	if code != 0 {
		t.Fatalf("build: %s", se)
	}
	id := strings.TrimSpace(so)
	iid, _ := os.ReadFile(idfile)
	if string(iid) != "sha256:"+id {
		t.Errorf("--iidfile %q, --quiet printed %q", iid, id)
	}
	if _, se, code := builderSplit(nil, "tag", "store-test:v1", "store-test:v2"); code != 0 {
		t.Fatalf("tag: %s", se)
	}
	so, _, _ = builderSplit(nil, "images")
	if !strings.Contains(so, "localhost/store-test") || !strings.Contains(so, "v2") || !strings.Contains(so, id[:12]) {
		t.Errorf("images does not list the tagged image:\n%s", so)
	}
	if _, se, code := builderSplit(nil, "rmi", "store-test:v1", "store-test:v2"); code != 0 {
		t.Fatalf("rmi: %s", se)
	}
	if _, se, code := builderSplit(nil, "inspect", "store-test:v2"); code == 0 || !strings.Contains(se, "store-test:v2") {
		t.Errorf("inspect after rmi: exit %d, %s", code, se)
	}
}

// TestRootlessPodman builds as an unprivileged user into that user's
// default store (the one podman uses) and runs the image with podman.
func TestRootlessPodman(t *testing.T) {
	u := ensureUser(t, "buildertest")
	ctx := filepath.Join(env.tmp, "rootless-ctx")
	mustRun(t, "cp", "-r", filepath.Join(env.repo, "testdata", "dockerfiles", "demo"), ctx)
	base := filepath.Join(env.tmp, "rootless-base")
	mustRun(t, filepath.Join(env.repo, "hack", "mkbase-context.sh"), base)
	mustRun(t, "chmod", "-R", "a+rX", ctx, base)

	// A podman of an earlier test may still be writing its events: retry.
	for i := 0; ; i++ {
		out, err := u.try("podman", "--runtime", "runc", "system", "reset", "--force")
		if err == nil {
			break
		}
		if i == 4 {
			t.Fatalf("podman system reset: %v\n%s", err, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	u.run(t, env.bin, "bud", "-q", "-t", "localhost/busybox:latest", base)
	u.run(t, env.bin, "bud", "-t", "localhost/rootless-demo:v1", ctx)
	if out := u.run(t, env.bin, "images"); !strings.Contains(out, "localhost/rootless-demo") {
		t.Errorf("builder images:\n%s", out)
	}
	insp := u.run(t, "podman", "--runtime", "runc", "image", "inspect", "localhost/rootless-demo:v1")
	if !strings.Contains(insp, `"app"`) || !strings.Contains(insp, "8080/tcp") {
		t.Errorf("podman image inspect lacks USER/EXPOSE:\n%s", insp)
	}
	if out := u.run(t, "podman", "--runtime", "runc", "run", "--rm", "--network=none", "localhost/rootless-demo:v1"); !strings.Contains(out, "hello from builder") || !strings.Contains(out, "built by builder") {
		t.Errorf("podman run output:\n%s", out)
	}
	out := u.run(t, "podman", "--runtime", "runc", "run", "--rm", "--network=none", "--entrypoint", "stat",
		"localhost/rootless-demo:v1", "-c", "%u:%g %a %n", "/app/hello.sh", "/app/motd", "/app")
	for _, want := range []string{"1000:1000 755 /app/hello.sh", "0:0 644 /app/motd"} {
		if !strings.Contains(out, want) {
			t.Errorf("podman stat: want %q in\n%s", want, out)
		}
	}
}

type testUser struct {
	name, home string
	uid        string
}

// ensureUser creates an unprivileged user (with subordinate id ranges, which
// useradd writes) once; the test suite runs as root in CI.
func ensureUser(t *testing.T, name string) *testUser {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("the rootless tests create their user and need to start as root (run via make test)")
	}
	if exec.Command("id", name).Run() != nil {
		mustRun(t, "useradd", "-m", "-s", "/bin/sh", name)
	}
	uid := strings.TrimSpace(mustRun(t, "id", "-u", name))
	run := "/run/user/" + uid
	os.MkdirAll(run, 0o700)
	mustRun(t, "chown", name+":", run)
	u := &testUser{name: name, home: "/home/" + name, uid: uid}
	// Debian's podman 4.3 and a newer containers/storage pick different
	// drivers when storage.conf says nothing; say it, as a user would.
	u.run(t, "sh", "-c", `mkdir -p ~/.config/containers && printf '[storage]\ndriver = "overlay"\n' > ~/.config/containers/storage.conf`)
	return u
}

func (u *testUser) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := u.try(args...)
	if err != nil {
		t.Fatalf("as %s: %s: %v\n%s", u.name, strings.Join(args, " "), err, out)
	}
	return out
}

// runAll is run, returning stderr and stdout together.
func (u *testUser) runAll(t *testing.T, args ...string) string { t.Helper(); return u.run(t, args...) }

// try runs args as the user and returns the combined output and error.
func (u *testUser) try(args ...string) (string, error) {
	full := append([]string{"-u", u.name, "--", "env", "HOME=" + u.home, "XDG_RUNTIME_DIR=/run/user/" + u.uid, "USER=" + u.name}, args...)
	cmd := exec.Command("runuser", full...)
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	return string(out), err
}
