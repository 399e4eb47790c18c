package tests

import (
	"archive/tar"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Errors come early, with the right exit code and a useful message.
func TestEarlyErrors(t *testing.T) {
	base := "FROM " + env.baseOCI
	cases := []struct {
		name       string
		dockerfile string
		args       []string
		code       int
		wants      []string
	}{
		{"bad tag before any step", base + "\nRUN echo should-not-run\n", []string{"-t", "Bad:Name"}, 2,
			[]string{`-t "Bad:Name"`, "lowercase"}},
		{"typo of a stage", base + " AS build\nRUN echo x > /x\n" + base + "\nCOPY --from=bulid /x /x\n", nil, 1,
			[]string{"Dockerfile:4", `no stage named "bulid" (did you mean "build"?)`}},
		{"cycle named", base + " AS a\nCOPY --from=b /x /x\n" + base + " AS b\nCOPY --from=a /y /y\n" + base + "\nCOPY --from=a /x /x\n", nil, 1,
			[]string{"circular dependency detected on stage: a -> b -> a"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := contextDir(t, c.dockerfile, nil)
			so, se, code := runAt("", nil, nil, append(append([]string{"bud"}, c.args...), ctx)...)
			if code != c.code {
				t.Errorf("exit %d, want %d\n%s%s", code, c.code, so, se)
			}
			for _, w := range c.wants {
				if !strings.Contains(se, w) {
					t.Errorf("error lacks %q:\n%s", w, se)
				}
			}
			if strings.Contains(so, "should-not-run") || (c.code == 2 && strings.Contains(so, "STEP")) {
				t.Errorf("steps ran before the error:\n%s", so)
			}
		})
	}
	// A stage may copy from one defined later, as in BuildKit.
	ctx := contextDir(t, base+" AS first\nCOPY --from=second /made /made\n"+base+" AS second\nRUN echo later > /made\n", nil)
	out := t.TempDir()
	if so, se, code := runAt("", nil, nil, "bud", "-q", "--target", "first", "-o", "type=local,dest="+out, ctx); code != 0 {
		t.Fatalf("forward COPY --from: exit %d\n%s%s", code, so, se)
	}
	if got := readFile(t, out+"/made"); strings.TrimSpace(got) != "later" {
		t.Errorf("/made = %q", got)
	}
	// A missing image is the user's error (1), not builder's (125).
	for _, args := range [][]string{{"rmi", "localhost/no-such-image"}, {"inspect", "localhost/no-such-image"}, {"push", "localhost/no-such-image", "oci:" + t.TempDir() + ":x"}} {
		if _, se, code := runAt("", nil, nil, args...); code != 1 {
			t.Errorf("builder %v: exit %d, want 1\n%s", args, code, se)
		}
	}
}

// buildah's and docker's build flags, spelled as users type them, checked
// in the image and in what RUN saw.
func TestBuildFlagsCompat(t *testing.T) {
	agentDir := t.TempDir()
	sock := agentDir + "/agent.sock"
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		t.Fatalf("ssh-agent: %v", err)
	}
	defer agent.Process.Kill()
	waitFor(t, func() bool { _, err := os.Stat(sock); return err == nil }, "ssh-agent socket")
	vol := t.TempDir()
	os.WriteFile(vol+"/in-volume", []byte("from the volume\n"), 0o644)
	extra := t.TempDir()
	os.WriteFile(extra+"/extra.txt", []byte("named context\n"), 0o644)
	ctx := contextDir(t, "FROM "+env.baseOCI+`
LABEL keep=1 drop=1
ENV KEEP=1 DROP=1
RUN grep myhost /etc/hosts > /hosts && ulimit -n > /nofile && cat /vol/in-volume > /vol-copy && df -k /dev/shm | tail -1 | awk '{print $2}' > /shm && grep CapBnd /proc/self/status > /caps
RUN --mount=type=ssh test -S "$SSH_AUTH_SOCK" && echo agent-reachable > /ssh
RUN --mount=type=secret,id=tok,env=TOK echo "$TOK" > /secret-env
COPY --from=extra extra.txt /extra.txt
`, nil)
	out := t.TempDir() + "/oci"
	so, se, code := runAt("", []string{"TOKVAR=sekret"}, nil, "bud", "--pull", "--rm", "--force-rm", "-t", "localhost/compat:v1",
		"--label", "added=yes", "--unsetlabel", "drop", "--annotation", "org.example.note=hi",
		"--env", "ADDED=2", "--unsetenv", "DROP", "--add-host", "myhost:10.9.8.7", "--ulimit", "nofile=512:1024",
		"-v", vol+":/vol:ro", "--shm-size", "16m", "--cap-drop", "NET_RAW", "--ssh", "default="+sock,
		"--secret", "id=tok,type=env,src=TOKVAR", "--build-context", "extra="+extra, "--squash",
		"-o", "type=oci,dest="+out, ctx)
	if code != 0 {
		t.Fatalf("bud: exit %d\n%s%s", code, so, se)
	}
	idx, _ := readIndexMaybe(out)
	l := readLayout(t, out)
	cfg := l.config["config"].(map[string]any)
	labels := cfg["Labels"].(map[string]any)
	if labels["added"] != "yes" || labels["keep"] != "1" || labels["drop"] != nil {
		t.Errorf("labels %v", labels)
	}
	env := fmt.Sprint(cfg["Env"])
	if !strings.Contains(env, "ADDED=2") || !strings.Contains(env, "KEEP=1") || strings.Contains(env, "DROP=") {
		t.Errorf("env %s", env)
	}
	if l.manifest.Annotations["org.example.note"] != "hi" {
		t.Errorf("manifest annotations %v (index %v)", l.manifest.Annotations, idx)
	}
	files := map[string]string{}
	for i := range l.manifest.Layers {
		for n, c := range l.files(t, i) {
			files[strings.TrimPrefix(n, "./")] = c
		}
	}
	for path, want := range map[string]string{
		"hosts": "10.9.8.7", "nofile": "512", "vol-copy": "from the volume", "shm": "16384",
		"ssh": "agent-reachable", "secret-env": "sekret", "extra.txt": "named context",
	} {
		if !strings.Contains(files[path], want) {
			t.Errorf("/%s = %q, want %q in it", path, files[path], want)
		}
	}
	if strings.Contains(files["caps"], "00000000a80425fb") || files["caps"] == "" {
		t.Errorf("--cap-drop NET_RAW: %q", files["caps"])
	}
	if _, ok := files["vol/in-volume"]; ok {
		t.Error("the -v volume's content entered a layer")
	}
	// --squash: the base's layer and one more.
	if n := len(l.manifest.Layers); n != 2 {
		t.Errorf("--squash: %d layers, want 2", n)
	}
}

// readIndexMaybe reads index.json for messages.
func readIndexMaybe(dir string) (string, error) {
	b, err := os.ReadFile(dir + "/index.json")
	return string(b), err
}

// images, inspect, rmi and version as buildah and docker users drive them.
func TestHousekeeping(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	base := "FROM " + env.baseOCI + "\n"
	for i, df := range []string{base + "LABEL tier=web\n", base + "RUN echo 1 > /one\n", base + "RUN echo 2 > /two\n"} {
		args := []string{"bud", "-q"}
		if i == 0 {
			args = append(args, "-t", "localhost/house:v1")
		}
		must(t, root, nil, nil, append(args, contextDir(t, df, nil))...)
	}
	lines := func(s string) int { return len(strings.Fields(s)) }
	if n := lines(must(t, root, nil, nil, "images", "-q", "--filter", "dangling=true")); n != 2 {
		t.Errorf("dangling images: %d, want 2", n)
	}
	if out := must(t, root, nil, nil, "images", "--filter", "label=tier=web", "--format", "{{.Repository}}:{{.Tag}}"); strings.TrimSpace(out) != "localhost/house:v1" {
		t.Errorf("label filter: %q", out)
	}
	if out := must(t, root, nil, nil, "images", "--filter", "reference=house", "--format", "table {{.Repository}}\t{{.Tag}}"); !strings.HasPrefix(out, "REPOSITORY") || !strings.Contains(out, "localhost/house") {
		t.Errorf("table format: %q", out)
	}
	for format, want := range map[string]string{
		"{{.Config.Labels.tier}}": "web", "{{.OCIv1.Config.Labels.tier}}": "web", "{{.Os}}/{{.Architecture}}": "linux/",
		"{{index .RepoTags 0}}": "localhost/house:v1", "{{.Config.Config.Labels.tier}}": "web",
	} {
		if out := must(t, root, nil, nil, "inspect", "--format", format, "localhost/house:v1"); !strings.Contains(out, want) {
			t.Errorf("inspect --format %s: %q, want %q", format, out, want)
		}
	}
	if out := must(t, root, nil, nil, "inspect", "--format", "json", "localhost/house:v1"); !strings.HasPrefix(out, "{") {
		t.Errorf("inspect --format json: %q", out)
	}
	must(t, root, nil, nil, "rmi", "--prune")
	if n := lines(must(t, root, nil, nil, "images", "-q")); n != 1 {
		t.Errorf("after rmi --prune: %d images, want 1", n)
	}
	if out := must(t, root, nil, nil, "--version"); !strings.Contains(out, "commit ") || strings.Contains(out, "commit unknown") || strings.Contains(out, "commit ,") {
		t.Errorf("--version: %q", out)
	}
}

// ADD of a git repository over HTTP (git's dumb protocol, served here):
// the ref resolved to its commit, the commit in the history and the cache
// key, a subdirectory, --keep-git-dir.
func TestAddGit(t *testing.T) {
	work := t.TempDir()
	git := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.email=t@example.com", "-c", "user.name=t", "-c", "init.defaultBranch=main"}, args...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	src := work + "/src"
	os.MkdirAll(src+"/sub", 0o755)
	os.WriteFile(src+"/top.txt", []byte("one\n"), 0o644)
	os.WriteFile(src+"/sub/inner.txt", []byte("inner\n"), 0o644)
	git(work, "init", "-q", src)
	git(src, "add", ".")
	git(src, "commit", "-qm", "one")
	bare := work + "/srv/repo.git"
	git(work, "clone", "-q", "--bare", src, bare)
	git(bare, "update-server-info")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go http.Serve(ln, http.FileServer(http.Dir(work+"/srv")))
	url := "http://" + ln.Addr().String() + "/repo.git"

	ctx := contextDir(t, "FROM "+env.baseOCI+"\nADD "+url+"#main /src\nADD "+url+"#main:sub /sub\nADD --keep-git-dir=true "+url+"#main /kept\n", nil)
	root := filepath.Join(t.TempDir(), "root")
	out := t.TempDir()
	so := must(t, root, nil, nil, "bud", "-o", "type=local,dest="+out, "-t", "localhost/gitadd:v1", ctx)
	if b, _ := os.ReadFile(out + "/src/top.txt"); string(b) != "one\n" {
		t.Errorf("/src/top.txt = %q\n%s", b, so)
	}
	if b, _ := os.ReadFile(out + "/sub/inner.txt"); string(b) != "inner\n" {
		t.Errorf("/sub/inner.txt = %q", b)
	}
	if _, err := os.Stat(out + "/src/.git"); err == nil {
		t.Error("/src/.git kept without --keep-git-dir")
	}
	if _, err := os.Stat(out + "/kept/.git"); err != nil {
		t.Errorf("--keep-git-dir: %v", err)
	}
	head, _ := exec.Command("git", "-C", src, "rev-parse", "HEAD").Output()
	hist := must(t, root, nil, nil, "inspect", "--format", "{{range .History}}{{.CreatedBy}}\n{{end}}", "localhost/gitadd:v1")
	if !strings.Contains(hist, "git commit "+strings.TrimSpace(string(head))) {
		t.Errorf("history does not name the commit %s:\n%s", head, hist)
	}
	// Same commit: cached. A new commit on the branch: both ADDs run again.
	if so := must(t, root, nil, nil, "bud", ctx); strings.Count(so, "--> Using cache") != 3 {
		t.Errorf("rebuild at the same commit should hit every ADD:\n%s", so)
	}
	os.WriteFile(src+"/top.txt", []byte("two\n"), 0o644)
	git(src, "commit", "-qam", "two")
	git(src, "push", "-q", bare, "main")
	git(bare, "update-server-info")
	out2 := t.TempDir()
	so = must(t, root, nil, nil, "bud", "-o", "type=local,dest="+out2, ctx)
	if b, _ := os.ReadFile(out2 + "/src/top.txt"); string(b) != "two\n" || strings.Contains(so, "--> Using cache") {
		t.Errorf("after a new commit: /src/top.txt = %q\n%s", b, so)
	}
}

// buildx's output and cache forms.
func TestBuildxForms(t *testing.T) {
	ctx := contextDir(t, "FROM "+env.baseOCI+"\nCOPY a.txt /a.txt\nRUN echo built > /built\n", map[string]string{"a.txt": "forms\n"})
	dir := t.TempDir()
	// -o - : the root file system as a tar on stdout, progress on stderr.
	so, se, code := runAt("", nil, nil, "bud", "-o", "-", ctx)
	if code != 0 || !strings.Contains(se, "STEP") {
		t.Fatalf("-o -: exit %d\n%s", code, se)
	}
	names := mustTarNames(t, []byte(so))
	if !names["a.txt"] || !names["built"] || !names["bin/busybox"] {
		t.Errorf("-o - tar lacks the root file system: %v", names)
	}
	// type=tar to a file; type=oci,dest=F.tar an OCI archive.
	must(t, "", nil, nil, "bud", "-q", "-o", "type=tar,dest="+dir+"/fs.tar", "-o", "type=oci,dest="+dir+"/img.tar", ctx)
	if b, _ := os.ReadFile(dir + "/fs.tar"); !mustTarNames(t, b)["built"] {
		t.Error("type=tar: no /built")
	}
	if out := mustRun(t, "skopeo", "inspect", "oci-archive:"+dir+"/img.tar:latest"); !strings.Contains(out, "Digest") {
		t.Errorf("type=oci,dest=F.tar: %s", out)
	}
	// type=local cache export, then a fresh store takes every step from it.
	must(t, filepath.Join(t.TempDir(), "a"), nil, nil, "bud", "-q", "--cache-to", "type=local,dest="+dir+"/cache,mode=max", ctx)
	out := must(t, filepath.Join(t.TempDir(), "b"), nil, nil, "bud", "--cache-from", "type=local,src="+dir+"/cache", ctx)
	if strings.Count(out, "--> Using cache") != 2 {
		t.Errorf("type=local cache: want 2 hits\n%s", out)
	}
}

func mustTarNames(t *testing.T, b []byte) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names[strings.TrimPrefix(strings.TrimSuffix(h.Name, "/"), "./")] = true
	}
	return names
}
