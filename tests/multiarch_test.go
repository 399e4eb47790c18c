package tests

// Multi-platform builds: a two-platform busybox base (Debian's
// busybox-static for amd64 and arm64) as a local manifest list made by
// builder and by buildah, an OCI layout index and a registry index; RUN
// under qemu-user for arm64; the cross-compile pattern; the emulation
// preflight; bad platforms.

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// arm64Busybox is Debian's busybox-static for arm64, which hack/foreign.sh
// (run by make test's install step) extracts; run here if it has not been.
func arm64Busybox(t *testing.T) string {
	t.Helper()
	p := filepath.Join(env.repo, ".cache", "arm64", "busybox")
	if _, err := os.Stat(p); err != nil {
		mustRun(t, filepath.Join(env.repo, "hack", "foreign.sh"))
	}
	if _, err := os.Stat("/proc/sys/fs/binfmt_misc/qemu-aarch64"); err != nil {
		mustRun(t, filepath.Join(env.repo, "hack", "foreign.sh"))
	}
	return p
}

// twoPlatformContext is a context whose Dockerfile makes the busybox base
// for whichever of amd64 and arm64 it is built for.
func twoPlatformContext(t *testing.T) string {
	t.Helper()
	// Under env.tmp, which another user may traverse (the rootless test).
	dir, err := os.MkdirTemp(env.tmp, "two-platform-")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	mustRun(t, filepath.Join(env.repo, "hack", "mkbase-context.sh"), filepath.Join(tmp, "amd64"))
	mustRun(t, filepath.Join(env.repo, "hack", "mkbase-context.sh"), filepath.Join(tmp, "arm64"), arm64Busybox(t))
	for _, a := range []string{"amd64", "arm64"} {
		if err := os.Rename(filepath.Join(tmp, a, "rootfs"), filepath.Join(dir, "rootfs-"+a)); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nARG TARGETARCH\nCOPY rootfs-$TARGETARCH/ /\nCMD [\"/bin/sh\"]\n"), 0o644)
	mustRun(t, "chmod", "-R", "a+rX", dir)
	return dir
}

// instance is one platform's image of an OCI layout's index.
type instance struct {
	platform ocispec.Platform
	l        *layout
}

// readIndex reads the index that index.json names under tag, and each of
// its images, with the standard library only.
func readIndex(t *testing.T, dir, tag string) (ocispec.Index, []instance) {
	t.Helper()
	var top ocispec.Index
	readJSON(t, filepath.Join(dir, "index.json"), &top)
	var idxDesc *ocispec.Descriptor
	for i, d := range top.Manifests {
		if d.Annotations[ocispec.AnnotationRefName] == tag {
			idxDesc = &top.Manifests[i]
		}
	}
	if idxDesc == nil || idxDesc.MediaType != ocispec.MediaTypeImageIndex {
		t.Fatalf("%s: index.json names no index under %q: %+v", dir, tag, top.Manifests)
	}
	l := &layout{dir: dir}
	var idx ocispec.Index
	readJSON(t, l.blob(idxDesc.Digest.String()), &idx)
	var out []instance
	for _, d := range idx.Manifests {
		if d.Platform == nil {
			t.Fatalf("index entry %s has no platform", d.Digest)
		}
		il := &layout{dir: dir, mdigest: d.Digest.String()}
		readJSON(t, l.blob(d.Digest.String()), &il.manifest)
		readJSON(t, l.blob(il.manifest.Config.Digest.String()), &il.config)
		out = append(out, instance{*d.Platform, il})
	}
	return idx, out
}

// files are the regular files of the image (every layer, later wins).
func (in instance) files(t *testing.T) map[string]string {
	out := map[string]string{}
	for i := range in.l.manifest.Layers {
		for n, c := range in.l.files(t, i) {
			out[strings.TrimPrefix(n, "./")] = c
		}
	}
	return out
}

// elfMachine is the e_machine of an ELF file's content (0 if not ELF).
func elfMachine(content string) uint16 {
	if len(content) < 20 || content[:4] != "\x7fELF" {
		return 0
	}
	if content[5] == 2 {
		return binary.BigEndian.Uint16([]byte(content[18:20]))
	}
	return binary.LittleEndian.Uint16([]byte(content[18:20]))
}

var machines = map[string]uint16{"amd64": 62, "arm64": 183}
var unames = map[string]string{"amd64": "x86_64", "arm64": "aarch64"}

// checkPlatforms checks an index of amd64 and arm64 images: each entry's
// platform is its config's, its /bin/busybox is of that architecture, and
// each file of want (path → content by architecture) is there.
func checkPlatforms(t *testing.T, ins []instance, want map[string]map[string]string) {
	t.Helper()
	var got []string
	for _, in := range ins {
		arch := in.platform.Architecture
		got = append(got, in.platform.OS+"/"+arch)
		if in.l.config["architecture"] != arch || in.l.config["os"] != in.platform.OS {
			t.Errorf("index says %s/%s, config says %v/%v", in.platform.OS, arch, in.l.config["os"], in.l.config["architecture"])
		}
		files := in.files(t)
		if m := elfMachine(files["bin/busybox"]); m != machines[arch] {
			t.Errorf("%s image: /bin/busybox is ELF machine %d, want %d (the host's files under another label?)", arch, m, machines[arch])
		}
		for path, byArch := range want {
			if g := strings.TrimSpace(files[path]); g != byArch[arch] {
				t.Errorf("%s image: %s = %q, want %q", arch, path, g, byArch[arch])
			}
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("index platforms %v, want linux/amd64 and linux/arm64", got)
	}
}

// manifestsOf is the (digest, size, platform) of each entry of a list as
// a tool printed it, whatever the list's media type.
func manifestsOf(t *testing.T, tool, raw string) []string {
	t.Helper()
	var l struct {
		Manifests []struct {
			Digest   string
			Size     int64
			Platform struct{ OS, Architecture, Variant string }
		}
	}
	if err := json.Unmarshal([]byte(raw), &l); err != nil {
		t.Fatalf("%s: %v\n%s", tool, err, raw)
	}
	var out []string
	for _, m := range l.Manifests {
		out = append(out, fmt.Sprintf("%s %d %s/%s/%s", m.Digest, m.Size, m.Platform.OS, m.Platform.Architecture, m.Platform.Variant))
	}
	slices.Sort(out)
	return out
}

func TestMultiPlatform(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	run := root + "-run"
	peer := func(tool string, args ...string) string {
		return mustRun(t, tool, append([]string{"--root", root, "--runroot", run, "--storage-driver", "vfs"}, args...)...)
	}
	reg := startRegistry(t)
	baseCtx := twoPlatformContext(t)
	baseOCI := filepath.Join(t.TempDir(), "base-oci")
	must(t, root, nil, nil, "bud", "-q", "--timestamp", "1700000000", "--platform", "linux/amd64,linux/arm64",
		"-t", "localhost/mbase:v1", "-o", "type=oci,dest="+baseOCI, baseCtx)
	_, ins := readIndex(t, baseOCI, "v1")
	checkPlatforms(t, ins, nil)
	// The local list, pushed whole: its images, then the index.
	must(t, root, nil, nil, append([]string{"push"}, append(reg.flags(), "localhost/mbase:v1", reg.host+"/mbase:v1")...)...)
	// The same two images as a list made by buildah.
	for _, a := range []string{"amd64", "arm64"} {
		must(t, root, nil, nil, "bud", "-q", "--timestamp", "1700000000", "--platform", "linux/"+a, "-t", "localhost/bb-"+a, baseCtx)
	}
	peer("buildah", "manifest", "create", "localhost/bmb:v1")
	for _, a := range []string{"amd64", "arm64"} {
		peer("buildah", "manifest", "add", "localhost/bmb:v1", "containers-storage:localhost/bb-"+a)
	}

	bases := []struct{ name, ref string }{
		{"builder-list", "localhost/mbase:v1"},
		{"buildah-list", "localhost/bmb:v1"},
		{"oci-index", "oci:" + baseOCI + ":v1"},
		{"registry-index", reg.host + "/mbase:v1"},
	}
	for _, b := range bases {
		t.Run("RUN-over-"+b.name, func(t *testing.T) {
			ctx := contextDir(t, "FROM "+b.ref+"\nRUN uname -m > /arch\n", nil)
			out := filepath.Join(t.TempDir(), "oci")
			tag := "localhost/march-" + b.name + ":v1"
			must(t, root, nil, nil, append([]string{"bud", "-q", "--platform", "linux/amd64,linux/arm64", "-t", tag,
				"-o", "type=oci,dest=" + out}, append(reg.flags(), ctx)...)...)
			_, ins := readIndex(t, out, "v1")
			checkPlatforms(t, ins, map[string]map[string]string{"arch": unames})
			// The local list: podman, buildah and builder read the same.
			ours := manifestsOf(t, "builder manifest inspect", must(t, root, nil, nil, "manifest", "inspect", tag))
			if len(ours) != 2 {
				t.Fatalf("builder manifest inspect %s: %v", tag, ours)
			}
			for _, tool := range []string{"podman", "buildah"} {
				if theirs := manifestsOf(t, tool, peer(tool, "manifest", "inspect", tag)); !slices.Equal(theirs, ours) {
					t.Errorf("%s manifest inspect %s:\n%v\nbuilder's:\n%v", tool, tag, theirs, ours)
				}
			}
		})
	}

	t.Run("push", func(t *testing.T) {
		ctx := contextDir(t, "FROM localhost/mbase:v1\nRUN uname -m > /arch\n", nil)
		ref := reg.host + "/march:v1"
		df := filepath.Join(t.TempDir(), "digest")
		must(t, root, nil, nil, append([]string{"bud", "-q", "--platform", "linux/arm64,linux/amd64", "--push", "--digestfile", df, "-t", ref}, append(reg.flags(), ctx)...)...)
		raw := mustRun(t, "skopeo", "inspect", "--raw", "--cert-dir", reg.certDir, "--creds", reg.user+":"+reg.pass, "docker://"+ref)
		ours := must(t, root, nil, nil, append([]string{"manifest", "inspect"}, append(reg.flags(), "docker://"+ref)...)...)
		if a, b := manifestsOf(t, "skopeo", raw), manifestsOf(t, "builder", ours); !slices.Equal(a, b) || len(a) != 2 {
			t.Errorf("skopeo inspect --raw:\n%v\nbuilder manifest inspect:\n%v", a, b)
		}
		var idx ocispec.Index
		json.Unmarshal([]byte(raw), &idx)
		if idx.MediaType != ocispec.MediaTypeImageIndex {
			t.Errorf("pushed %q, want an OCI index", idx.MediaType)
		}
		if d := readFile(t, df); !strings.Contains(d, "sha256:") {
			t.Errorf("--digestfile: %q", d)
		}
		// What the registry serves holds each platform's own files.
		out := filepath.Join(t.TempDir(), "pulled")
		mustRun(t, "skopeo", "copy", "--all", "--src-cert-dir", reg.certDir, "--src-creds", reg.user+":"+reg.pass, "docker://"+ref, "oci:"+out+":v1")
		_, ins := readIndex(t, out, "v1")
		checkPlatforms(t, ins, map[string]map[string]string{"arch": unames})
	})

	t.Run("cross-compile", func(t *testing.T) {
		// The build stage's inputs are the same for every target: it runs
		// once, natively; each target records its own TARGETARCH.
		ctx := contextDir(t, `FROM --platform=$BUILDPLATFORM localhost/mbase:v1 AS build
RUN echo BUILD-STAGE-RAN && uname -m > /built-on
FROM localhost/mbase:v1
ARG TARGETARCH
COPY --from=build /built-on /built-on
RUN echo $TARGETARCH > /target && uname -m > /arch
`, nil)
		out := filepath.Join(t.TempDir(), "oci")
		// --no-cache: the sharing is this build's, not an earlier build's entries.
		log := must(t, root, nil, nil, "bud", "--no-cache", "--platform", "linux/amd64,linux/arm64", "-t", "localhost/cross:v1", "-o", "type=oci,dest="+out, ctx)
		steps := regexp.MustCompile(`(?m)^\[linux/\w+\] \[1/2\] STEP 2/2: RUN echo BUILD-STAGE-RAN`).FindAllString(log, -1)
		ran := regexp.MustCompile(`(?m)^\[linux/\w+\] \[1/2\] \| BUILD-STAGE-RAN$`).FindAllString(log, -1)
		shared := regexp.MustCompile(`(?m)^\[linux/\w+\] (?:\[\d+/\d+\] )?--> Using cache \w+ \(made for linux/\w+ in this build\)$`).FindAllString(log, -1)
		if len(steps) != 2 || len(ran) != 1 || len(shared) != 1 {
			t.Errorf("the build stage's RUN should run for one platform and be shared with the other:\n%s", log)
		}
		host := strings.TrimSpace(mustRun(t, "uname", "-m"))
		_, ins := readIndex(t, out, "v1")
		checkPlatforms(t, ins, map[string]map[string]string{
			"built-on": {"amd64": host, "arm64": host},
			"target":   {"amd64": "amd64", "arm64": "arm64"},
			"arch":     unames,
		})
	})

	t.Run("manifest-flag-adds", func(t *testing.T) {
		ctx := contextDir(t, "FROM localhost/mbase:v1\nRUN uname -m > /arch\n", nil)
		must(t, root, nil, nil, "bud", "-q", "--platform", "linux/arm64", "--manifest", "localhost/grown:v1", ctx)
		must(t, root, nil, nil, "bud", "-q", "--platform", "linux/amd64", "--manifest", "localhost/grown:v1", ctx)
		// A rebuild for a platform replaces that platform's image.
		must(t, root, nil, nil, "bud", "-q", "--no-cache", "--platform", "linux/amd64", "--manifest", "localhost/grown:v1", ctx)
		got := manifestsOf(t, "podman", peer("podman", "manifest", "inspect", "localhost/grown:v1"))
		if len(got) != 2 || !strings.Contains(strings.Join(got, ","), "arm64") || !strings.Contains(strings.Join(got, ","), "amd64") {
			t.Errorf("--manifest list after three builds: %v", got)
		}
	})

	t.Run("all-platforms", func(t *testing.T) {
		ctx := contextDir(t, "FROM oci:"+baseOCI+":v1\nRUN uname -m > /arch\n", nil)
		out := filepath.Join(t.TempDir(), "oci")
		must(t, root, nil, nil, "bud", "-q", "--all-platforms", "-t", "localhost/all:v1", "-o", "type=oci,dest="+out, ctx)
		_, ins := readIndex(t, out, "v1")
		checkPlatforms(t, ins, map[string]map[string]string{"arch": unames})
	})

	t.Run("emulation-preflight", func(t *testing.T) {
		// binfmt_misc as the test shows it: mounted, no handler for arm64.
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "status"), []byte("enabled\n"), 0o644)
		ctx := contextDir(t, "FROM localhost/mbase:v1\nRUN uname -m > /arch\n", nil)
		so, se, code := runAt(root, []string{"BUILDER_BINFMT_MISC=" + dir}, nil, "bud", "--platform", "linux/amd64,linux/arm64", ctx)
		if code != 1 || !strings.Contains(se, "linux/arm64") || !strings.Contains(se, "qemu-user-static") || !strings.Contains(se, "update-binfmts") {
			t.Errorf("exit %d, want 1 with an error naming linux/arm64 and the fix:\n%s", code, se)
		}
		if strings.Contains(so, "STEP") {
			t.Errorf("steps ran before the preflight failed:\n%s", so)
		}
	})

	t.Run("bad-platforms", func(t *testing.T) {
		ctx := contextDir(t, "FROM localhost/mbase:v1\nRUN true\n", nil)
		amdOnly := contextDir(t, "FROM localhost/bb-amd64\nRUN true\n", nil)
		for _, c := range []struct {
			args  []string
			code  int
			wants []string
		}{
			{[]string{"--platform", "windows/amd64", ctx}, 2, []string{"windows/amd64", "RUN", "Dockerfile:2"}},
			{[]string{"--platform", "linux/arm64/v99", ctx}, 2, []string{"v99"}},
			{[]string{"--platform", "linux/amd64,linux", ctx}, 2, []string{`"linux"`}},
			{[]string{"--platform", "linux/amd64,", ctx}, 2, []string{"empty"}},
			{[]string{"--platform", "linux/amd64,linux/arm64", "-o", "type=docker-archive,dest=" + filepath.Join(t.TempDir(), "a.tar"), ctx}, 2, []string{"docker-archive", "type=oci"}},
			{[]string{"--all-platforms", "--platform", "linux/amd64", ctx}, 2, []string{"--all-platforms"}},
			{[]string{"--platform", "linux/arm64", amdOnly}, 1, []string{"localhost/bb-amd64", "linux/amd64", "linux/arm64"}},
		} {
			_, se, code := runAt(root, nil, nil, append([]string{"bud", "-q"}, c.args...)...)
			if code != c.code {
				t.Errorf("bud %v: exit %d, want %d\n%s", c.args, code, c.code, se)
			}
			for _, w := range c.wants {
				if !strings.Contains(se, w) {
					t.Errorf("bud %v: error lacks %q:\n%s", c.args, w, se)
				}
			}
		}
		// The old behaviour, asked for: the amd64 base is used, with a warning.
		if _, se, code := runAt(root, nil, nil, "bud", "-q", "--platform", "linux/arm64", "--platform-mismatch=warn", amdOnly); code != 0 || !strings.Contains(se, "differs") {
			t.Errorf("--platform-mismatch=warn: exit %d\n%s", code, se)
		}
	})
}

// TestMultiPlatformRootless builds both platforms as an unprivileged user:
// the arm64 RUN goes through the emulator inside the user namespace.
func TestMultiPlatformRootless(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Fatalf("this test takes arm64 as the foreign platform; it runs on amd64 machines")
	}
	u := ensureUser(t, "buildertest")
	baseCtx := twoPlatformContext(t)
	work := filepath.Join(env.tmp, "rootless-multi")
	os.MkdirAll(work, 0o755)
	mustRun(t, "chown", u.name+":", work)
	base := filepath.Join(work, "base")
	u.run(t, env.bin, "bud", "-q", "--platform", "linux/amd64,linux/arm64", "-o", "type=oci,dest="+base, "-t", "localhost/rl-base:v1", baseCtx)
	ctx := filepath.Join(work, "ctx")
	os.MkdirAll(ctx, 0o755)
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM oci:"+base+":v1\nRUN uname -m > /arch && id -u > /uid\n"), 0o644)
	mustRun(t, "chmod", "-R", "a+rX", ctx)
	out := filepath.Join(work, "out")
	u.run(t, env.bin, "bud", "-q", "--platform", "linux/amd64,linux/arm64", "-o", "type=oci,dest="+out, "-t", "localhost/rl:v1", ctx)
	_, ins := readIndex(t, out, "v1")
	checkPlatforms(t, ins, map[string]map[string]string{"arch": unames, "uid": {"amd64": "0", "arm64": "0"}})
}
