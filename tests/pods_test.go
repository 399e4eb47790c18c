package tests

// Unprivileged CI pods: builder's own image (hack/image.sh, built by
// builder) run with podman as the stand-in for each class of Kubernetes
// pod, building and pushing to the test registry from inside the
// container; the pushed images are checked from outside with skopeo and
// umoci; `builder doctor` is checked in each class.

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const podImage = "localhost/builder-pods:test"

var podImageOnce sync.Once

// buildPodImage builds builder's image with the binary under test, into
// root's default store, where podman finds it.
func buildPodImage(t *testing.T) {
	t.Helper()
	var out []byte
	var err error
	podImageOnce.Do(func() {
		out, err = exec.Command(filepath.Join(env.repo, "hack", "image.sh"), env.bin, podImage).CombinedOutput()
	})
	if err != nil {
		t.Fatalf("hack/image.sh: %v\n%s", err, out)
	}
}

// runtimeDefaultProfile derives, from podman's default seccomp profile, one
// like Kubernetes' RuntimeDefault (containerd's and Docker's default):
// unshare, mount, umount, setns, sethostname, pivot_root and the namespace
// flags of clone only with CAP_SYS_ADMIN, clone3 refused without it.
func runtimeDefaultProfile(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("/usr/share/containers/seccomp.json")
	if err != nil {
		t.Fatalf("podman's default seccomp profile: %v", err)
	}
	var prof map[string]any
	if err := json.Unmarshal(raw, &prof); err != nil {
		t.Fatal(err)
	}
	gated := map[string]bool{"unshare": true, "mount": true, "umount": true, "umount2": true, "setns": true,
		"sethostname": true, "setdomainname": true, "pivot_root": true, "clone": true, "clone3": true}
	var kept []any
	for _, s := range prof["syscalls"].([]any) {
		rule := s.(map[string]any)
		var names []any
		for _, n := range rule["names"].([]any) {
			if !gated[n.(string)] {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			continue
		}
		rule["names"] = names
		kept = append(kept, rule)
	}
	const nsFlags = 0x7E020000 // CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
	kept = append(kept,
		map[string]any{"names": []string{"unshare", "mount", "umount", "umount2", "setns", "sethostname", "setdomainname", "pivot_root", "clone", "clone3"},
			"action": "SCMP_ACT_ALLOW", "includes": map[string]any{"caps": []string{"CAP_SYS_ADMIN"}}},
		map[string]any{"names": []string{"clone"}, "action": "SCMP_ACT_ALLOW",
			"args":     []any{map[string]any{"index": 0, "value": nsFlags, "op": "SCMP_CMP_MASKED_EQ", "valueTwo": 0}},
			"excludes": map[string]any{"caps": []string{"CAP_SYS_ADMIN"}}},
		map[string]any{"names": []string{"clone3"}, "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
			"excludes": map[string]any{"caps": []string{"CAP_SYS_ADMIN"}}},
	)
	prof["syscalls"] = kept
	b, _ := json.Marshal(prof)
	p := filepath.Join(t.TempDir(), "runtime-default.json")
	os.WriteFile(p, b, 0o644)
	return p
}

// podClass is one kind of pod and what builds there.
type podClass struct {
	name   string
	flags  []string // podman run flags
	runs   bool     // a Dockerfile with RUN builds (else it fails before building)
	doctor []string // words builder doctor must say
	// singleID: one uid mapped; the RUN's chown fails naming the mapping.
	singleID bool
}

func TestPods(t *testing.T) {
	buildPodImage(t)
	reg := startRegistry(t)
	creds := reg.user + ":" + reg.pass
	// The tests stand in for normal machines, where /dev/fuse is 0666.
	os.Chmod("/dev/fuse", 0o666)
	base := reg.host + "/pods/busybox:latest"
	mustRun(t, "skopeo", "copy", "-q", "--dest-cert-dir", reg.certDir, "--dest-creds", creds, env.baseOCI, "docker://"+base)
	seccomp := runtimeDefaultProfile(t)

	runCtx := filepath.Join(env.tmp, "pods-run")
	copyCtx := filepath.Join(env.tmp, "pods-copy")
	for dir, df := range map[string]string{
		runCtx:  "FROM " + base + "\nCOPY hello.txt /hello.txt\nRUN mkdir /data && echo owned > /data/f && chown 1000:1000 /data/f\nRUN rm /etc/group\n",
		copyCtx: "FROM " + base + "\nCOPY hello.txt /hello.txt\nCOPY --chown=1000:1000 hello.txt /home/app/mine.txt\n",
	} {
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644)
		os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello from a pod\n"), 0o644)
	}
	os.Chmod(reg.certDir, 0o755)
	os.Chmod(filepath.Join(reg.certDir, "ca.crt"), 0o644)

	classes := []podClass{
		{name: "uid1000", flags: []string{"--user", "1000"}, runs: true,
			doctor: []string{"ok    RUN isolation", "procMount: Unmasked", "sethostname is refused"}},
		{name: "uid1000-fuse", flags: []string{"--user", "1000", "--device", "/dev/fuse"}, runs: true,
			doctor: []string{"ok    RUN isolation", "ok    snapshots"}},
		{name: "container-root", flags: []string{"--user", "0"}, runs: true,
			doctor: []string{"emptyDir"}},
		{name: "own-userns", flags: []string{"--uidmap", "0:200000:65536", "--gidmap", "0:200000:65536", "--user", "1000"}, runs: true,
			doctor: []string{"ok    RUN isolation", "procMount: Unmasked"}},
		{name: "runtime-default", flags: []string{"--security-opt", "seccomp=" + seccomp, "--user", "1000"},
			doctor: []string{"fail  user namespace", "seccompProfile", "hostUsers: false", "fail  RUN isolation"}},
		{name: "restricted", flags: []string{"--security-opt", "seccomp=" + seccomp, "--cap-drop=ALL", "--security-opt", "no-new-privileges", "--user", "1000"},
			doctor: []string{"fail  user namespace", "do not drop ALL", "fail  RUN isolation"}},
		{name: "unconfined", flags: []string{"--security-opt", "seccomp=unconfined", "--user", "1000"}, runs: true,
			doctor: []string{"ok    RUN isolation", "ok    user namespace"}},
		// allowPrivilegeEscalation: false alone: newuidmap's file capabilities
		// do not apply, a single id is mapped; the RUN that chowns fails
		// naming the mapping, a COPY --chown keeps its owner.
		{name: "no-new-privileges", flags: []string{"--security-opt", "no-new-privileges", "--user", "1000"}, singleID: true,
			doctor: []string{"warn  id mapping", "no_new_privs", "allowPrivilegeEscalation: true"}},
	}
	for _, c := range classes {
		t.Run(c.name, func(t *testing.T) {
			pod := func(args ...string) (string, error) {
				full := append([]string{"--runtime", "runc", "run", "--rm", "--network", "host",
					"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
					"-v", runCtx + ":/run-ctx:ro", "-v", copyCtx + ":/copy-ctx:ro", "-v", reg.certDir + ":/certs:ro"}, c.flags...)
				full = append(append(full, podImage), args...)
				out, err := exec.Command("podman", full...).CombinedOutput()
				return string(out), err
			}
			ref := reg.host + "/pods/" + c.name + ":v1"
			bud := []string{"bud", "--cert-dir", "/certs", "--creds", creds, "--push", "-t"}
			out, err := pod(append(bud, ref, "/run-ctx")...)
			switch {
			case c.runs && err != nil:
				t.Fatalf("build with RUN failed:\n%s", out)
			case c.runs:
				checkPodImage(t, reg, ref, true)
			case c.singleID:
				if err == nil || !strings.Contains(out, "only one uid is mapped") || !strings.Contains(out, "no_new_privs") {
					t.Fatalf("the chown RUN should fail naming the single-id mapping and why:\n%s", out)
				}
				cref := reg.host + "/pods/" + c.name + "-copy:v1"
				if out, err := pod(append(bud, cref, "/copy-ctx")...); err != nil {
					t.Fatalf("COPY-only build:\n%s", out)
				}
				checkPodImage(t, reg, cref, false)
			case err == nil:
				t.Fatalf("a build with RUN should fail before building here:\n%s", out)
			default:
				for _, w := range []string{"Dockerfile:3: RUN cannot run here", "seccompProfile", "hostUsers: false"} {
					if !strings.Contains(out, w) {
						t.Errorf("the RUN failure lacks %q:\n%s", w, out)
					}
				}
				if strings.Contains(out, "STEP 2/") {
					t.Errorf("steps ran before the failure:\n%s", out)
				}
				cref := reg.host + "/pods/" + c.name + "-copy:v1"
				if out, err := pod(append(bud, cref, "/copy-ctx")...); err != nil {
					t.Fatalf("a Dockerfile without RUN should build here:\n%s", out)
				}
				checkPodImage(t, reg, cref, false)
			}
			if c.name == "runtime-default" {
				// A forced isolation never steps down: exit 1, naming why.
				out, err := pod("bud", "--isolation=chroot", "/copy-ctx")
				if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(out, "--isolation=chroot: chroot is not allowed here") {
					t.Errorf("--isolation=chroot where chroot is refused: %v\n%s", err, out)
				}
			}
			out, err = pod("doctor")
			for _, w := range c.doctor {
				if !strings.Contains(out, w) {
					t.Errorf("builder doctor lacks %q:\n%s", w, out)
				}
			}
			if wantFail := !c.runs && !c.singleID; (err != nil) != wantFail {
				t.Errorf("builder doctor: error %v, want failure %v\n%s", err, wantFail, out)
			}
		})
	}
}

// checkPodImage unpacks the pushed image with umoci and checks content,
// ownership and (for the RUN Dockerfile) the whiteout of /etc/group.
func checkPodImage(t *testing.T, reg *testRegistry, ref string, withRun bool) {
	t.Helper()
	dir := t.TempDir()
	mustRun(t, "skopeo", "copy", "-q", "--src-cert-dir", reg.certDir, "--src-creds", reg.user+":"+reg.pass, "docker://"+ref, "oci:"+dir+"/oci:v1")
	bundle := filepath.Join(dir, "bundle")
	mustRun(t, "umoci", "unpack", "--image", dir+"/oci:v1", bundle)
	rootfs := filepath.Join(bundle, "rootfs")
	owner := func(p string) string {
		return strings.TrimSpace(mustRun(t, "stat", "-c", "%u:%g", filepath.Join(rootfs, p)))
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "hello.txt")); err != nil || string(b) != "hello from a pod\n" {
		t.Errorf("/hello.txt: %q, %v", b, err)
	}
	if o := owner("hello.txt"); o != "0:0" {
		t.Errorf("/hello.txt owned by %s, want 0:0", o)
	}
	if withRun {
		if o := owner("data/f"); o != "1000:1000" {
			t.Errorf("/data/f owned by %s, want 1000:1000", o)
		}
		if _, err := os.Stat(filepath.Join(rootfs, "etc/group")); !os.IsNotExist(err) {
			t.Errorf("/etc/group should be deleted by its whiteout: %v", err)
		}
		if _, err := os.Stat(filepath.Join(rootfs, "etc/passwd")); err != nil {
			t.Errorf("/etc/passwd should survive: %v", err)
		}
	} else if o := owner("home/app/mine.txt"); o != "1000:1000" {
		t.Errorf("/home/app/mine.txt owned by %s, want 1000:1000", o)
	}
}
