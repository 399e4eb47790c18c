package tests

import (
	"archive/tar"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// runCtx copies testdata/run/NAME into a directory every test user can read.
func runCtx(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp(env.tmp, "run-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	mustRun(t, "cp", "-r", filepath.Join(env.repo, "testdata", "run", name)+"/.", dir)
	mustRun(t, "chmod", "-R", "a+rX", dir)
	return dir
}

// outDir makes a directory the user can write an OCI layout into.
func outDir(t *testing.T, owner string) string {
	t.Helper()
	dir, err := os.MkdirTemp(env.tmp, "out-")
	if err != nil {
		t.Fatal(err)
	}
	if owner != "" {
		mustRun(t, "chown", owner+":", dir)
	}
	return filepath.Join(dir, "oci")
}

// headers returns layer i's tar headers by name.
func (l *layout) headers(t *testing.T, i int) map[string]*tar.Header {
	t.Helper()
	out := map[string]*tar.Header{}
	for _, e := range l.layerHeaders(t, i) {
		out[strings.TrimSuffix(e.Name, "/")] = e
	}
	return out
}

// checkRunLayers checks the layers testdata/run/layers (or nosubids) makes.
func checkRunLayers(t *testing.T, l *layout, withChown bool) {
	t.Helper()
	if n := len(l.manifest.Layers); n != 5 {
		t.Fatalf("want 5 layers (base + 4 RUN), got %d", n)
	}
	del := l.headers(t, 2)
	for _, want := range []string{"data/.wh.file", "data/.wh.dir", "data/redo/.wh..wh..opq", "data/redo/new"} {
		if _, ok := del[want]; !ok {
			t.Errorf("layer 2: missing %s; have %v", want, keys(del))
		}
	}
	for _, bad := range []string{"data/redo/old", "data/dir/x", "data/file"} {
		if _, ok := del[bad]; ok {
			t.Errorf("layer 2: unexpected %s", bad)
		}
	}
	if h := del["data/.wh.dir"]; h != nil && h.Typeflag != tar.TypeReg {
		t.Errorf("whiteout is not a regular file: %c", h.Typeflag)
	}
	attrs := l.headers(t, 3)
	if withChown {
		if h := attrs["data/owned"]; h == nil || h.Uid != 1000 || h.Gid != 1000 {
			t.Errorf("data/owned: want uid/gid 1000 in the tar header, got %+v", h)
		}
	}
	if h := attrs["data/suid"]; h == nil || h.Mode&0o4000 == 0 {
		t.Errorf("data/suid: setuid bit lost: %+v", h)
	}
	h1, h2 := attrs["data/h1"], attrs["data/h2"]
	switch {
	case h1 == nil || h2 == nil:
		t.Errorf("hard link pair missing: %v", keys(attrs))
	case !(h2.Typeflag == tar.TypeLink && h2.Linkname == "data/h1") && !(h1.Typeflag == tar.TypeLink && h1.Linkname == "data/h2"):
		t.Errorf("h1/h2 are not a hard link pair: %c %q / %c %q", h1.Typeflag, h1.Linkname, h2.Typeflag, h2.Linkname)
	}
	netLayer := l.headers(t, 4)
	if _, ok := netLayer["data/net-step"]; !ok {
		t.Errorf("layer 4: missing data/net-step: %v", keys(netLayer))
	}
	for name := range netLayer {
		if strings.HasPrefix(name, "etc/hosts") || strings.HasPrefix(name, "etc/resolv.conf") || name == "etc" {
			t.Errorf("layer 4: sandbox file leaked into the layer: %s", name)
		}
	}
}

func keys(m map[string]*tar.Header) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestRunAsRoot builds the RUN layers case as real root.
func TestRunAsRoot(t *testing.T) {
	out := outDir(t, "")
	if o, err := builder(nil, "bud", "-q", "--timestamp", "0", "-o", "type=oci,dest="+out, runCtx(t, "layers")); err != nil {
		t.Fatalf("build: %v\n%s", err, o)
	}
	checkRunLayers(t, readLayout(t, out), true)
}

// TestRunRootless builds as an unprivileged user with subordinate ids,
// then compares what podman run shows with umoci's unpack of the export.
func TestRunRootless(t *testing.T) {
	u := ensureUser(t, "buildertest")
	base := baseFor(t, u)
	_ = base
	out := outDir(t, u.name)
	u.run(t, env.bin, "bud", "--timestamp", "0", "-t", "localhost/run-layers:v1", "-o", "type=oci,dest="+out, runCtx(t, "layers"))
	l := readLayout(t, out)
	checkRunLayers(t, l, true)

	// podman (same user, same store) and umoci (unpacking the OCI export as
	// root, so ownership is real) must show the same files and owners.
	script := "cd / && find data | sort | while read f; do stat -c '%n %u:%g %a %F' \"$f\"; done"
	fromPodman := u.run(t, "podman", "--runtime", "runc", "run", "--rm", "--network=none", "localhost/run-layers:v1", "sh", "-c", script)
	bundle := filepath.Join(t.TempDir(), "bundle")
	mustRun(t, "umoci", "unpack", "--image", out+":v1", bundle)
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = filepath.Join(bundle, "rootfs")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	script2 := strings.Replace(script, "cd / && ", "", 1)
	fromUmoci, err := exec.Command("sh", "-c", "cd "+filepath.Join(bundle, "rootfs")+" && "+script2).CombinedOutput()
	if err != nil {
		t.Fatalf("stat unpacked tree: %v\n%s", err, fromUmoci)
	}
	if clean(fromPodman) != clean(string(fromUmoci)) {
		t.Errorf("podman run and umoci unpack differ:\npodman:\n%s\numoci:\n%s", fromPodman, fromUmoci)
	}
	if !strings.Contains(fromPodman, "data/owned 1000:1000") {
		t.Errorf("podman does not see data/owned as 1000:1000:\n%s", fromPodman)
	}
}

// TestRunRootlessNoSubIDs builds as a user with no /etc/subuid ranges: only
// the user maps to root, and the build still works for root-owned files.
func TestRunRootlessNoSubIDs(t *testing.T) {
	u := ensureUser(t, "buildernosub")
	mustRun(t, "sh", "-c", "sed -i '/^buildernosub:/d' /etc/subuid /etc/subgid")
	baseFor(t, u)
	out := outDir(t, u.name)
	o := u.runAll(t, env.bin, "bud", "--timestamp", "0", "-o", "type=oci,dest="+out, runCtx(t, "nosubids"))
	checkRunLayers(t, readLayout(t, out), false)
	if !strings.Contains(strings.ToLower(o), "subordinate") && !strings.Contains(strings.ToLower(o), "/etc/subuid") {
		t.Errorf("no warning about missing subordinate ranges:\n%s", o)
	}
}

// baseFor builds the busybox base image into u's store.
func baseFor(t *testing.T, u *testUser) string {
	t.Helper()
	base := filepath.Join(env.tmp, "base-"+u.name)
	if _, err := os.Stat(base); err != nil {
		mustRun(t, filepath.Join(env.repo, "hack", "mkbase-context.sh"), base)
		mustRun(t, "chmod", "-R", "a+rX", base)
	}
	u.run(t, env.bin, "bud", "-q", "--timestamp", "1700000000", "-t", "localhost/busybox:latest", base)
	return base
}

func clean(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.Contains(l, "level=warning") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestRunIsolation: network none vs host, PID namespace, host files.
func TestRunIsolation(t *testing.T) {
	u := ensureUser(t, "buildertest")
	baseFor(t, u)
	canary := filepath.Join("/tmp", fmt.Sprintf("builder-canary-%d", os.Getpid()))
	if err := os.WriteFile(canary, []byte("host secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(canary)
	ctx, err := os.MkdirTemp(env.tmp, "iso-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(ctx, 0o755)
	write := func(name, content string) {
		os.WriteFile(filepath.Join(ctx, name), []byte(content), 0o644)
	}
	// busybox-static's wget crashes in glibc's static NSS; nc does not resolve.
	write("Dockerfile.net", "FROM busybox\nARG HP\nRUN printf 'GET /files/hello.txt HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${HP%%:*} ${HP##*:} > /fetched; grep -q 'hello over http' /fetched\n")
	hp := "HP=" + strings.TrimPrefix(env.url, "http://")
	write("Dockerfile.pid", "FROM busybox\nRUN echo $$ > /pid && ps -o pid= | wc -l > /nproc\n")
	write("Dockerfile.canary", fmt.Sprintf("FROM busybox\nRUN for p in %[1]s /proc/1/root%[1]s ../../../../..%[1]s; do if cat $p 2>/dev/null; then echo LEAK; exit 1; fi; done\n", canary))

	// host network reaches the server on 127.0.0.1, none does not.
	u.run(t, env.bin, "bud", "-q", "--network=host", "--build-arg", hp, "-f", filepath.Join(ctx, "Dockerfile.net"), ctx)
	o, err := u.try(env.bin, "bud", "-q", "--network=none", "--build-arg", hp, "-f", filepath.Join(ctx, "Dockerfile.net"), ctx)
	if err == nil {
		t.Errorf("--network=none reached %s:\n%s", env.url, o)
	} else if !strings.Contains(o, "Dockerfile.net:3") || !strings.Contains(o, "exit status") {
		t.Errorf("--network=none failure does not name the RUN line and exit status:\n%s", o)
	}

	out := outDir(t, u.name)
	u.run(t, env.bin, "bud", "-q", "--timestamp", "0", "-o", "type=oci,dest="+out, "-f", filepath.Join(ctx, "Dockerfile.pid"), ctx)
	files := readLayout(t, out).files(t, 1)
	if strings.TrimSpace(files["pid"]) != "1" {
		t.Errorf("RUN's shell is not PID 1: %q", files["pid"])
	}
	if n := strings.TrimSpace(files["nproc"]); n == "" || n > "4" || len(n) > 1 {
		t.Errorf("RUN sees %s processes; want only its own tree", n)
	}
	if o, err := u.try(env.bin, "bud", "-q", "-f", filepath.Join(ctx, "Dockerfile.canary"), ctx); err != nil {
		t.Errorf("a RUN could read the host canary file:\n%s", o)
	}
}

// TestSnapshotDriversAgree builds the same Dockerfile with each snapshot
// driver, with chroot isolation and with runc and crun handed the bundle:
// the layers must be identical.
func TestSnapshotDriversAgree(t *testing.T) {
	ctx := runCtx(t, "layers")
	var first []string
	var firstName string
	for _, v := range []struct {
		name string
		args []string
	}{
		{"overlay", []string{"--snapshotter", "overlay"}},
		{"fuse-overlayfs", []string{"--snapshotter", "fuse-overlayfs"}},
		{"copy", []string{"--snapshotter", "copy"}},
		{"chroot", []string{"--isolation", "chroot"}},
		{"runc", []string{"--runtime", "runc"}},
		{"crun", []string{"--runtime", "crun"}},
	} {
		out := outDir(t, "")
		args := append([]string{"bud", "-q", "--timestamp", "0", "-o", "type=oci,dest=" + out}, v.args...)
		if o, err := builder(nil, append(args, ctx)...); err != nil {
			t.Fatalf("%s: build: %v\n%s", v.name, err, o)
		}
		l := readLayout(t, out)
		checkRunLayers(t, l, true)
		if first == nil {
			first, firstName = l.diffs, v.name
			continue
		}
		if strings.Join(l.diffs, " ") != strings.Join(first, " ") {
			t.Errorf("%s diff_ids differ from %s:\n%v\n%v", v.name, firstName, l.diffs, first)
		}
	}
}
