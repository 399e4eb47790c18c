package tests

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A kaniko job's command line, unchanged but for the executable: build,
// push, registry cache, digest files, tarball; then a second job warm from
// the registry cache.
func TestKanikoFlags(t *testing.T) {
	reg := startRegistry(t)
	auth := filepath.Join(t.TempDir(), "config.json")
	tok := base64.StdEncoding.EncodeToString([]byte(reg.user + ":" + reg.pass))
	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{reg.host: map[string]string{"auth": tok}}})
	os.WriteFile(auth, cfg, 0o600)
	ctx := contextDir(t, "FROM "+env.baseOCI+"\nARG V\nCOPY app.txt /app.txt\nRUN echo built-$V > /built\n", map[string]string{"app.txt": "kaniko\n"})
	os.MkdirAll(filepath.Join(ctx, "docker"), 0o755)
	os.Rename(filepath.Join(ctx, "Dockerfile"), filepath.Join(ctx, "docker", "Dockerfile.ci"))
	dest := reg.host + "/kaniko/app:v1"
	dir := t.TempDir()
	job := func(root string) (string, string, int) {
		return runAt(root, []string{"REGISTRY_AUTH_FILE=" + auth}, nil, "kaniko",
			"--context", "dir://"+ctx, "--dockerfile", "docker/Dockerfile.ci", "--destination", dest,
			"--cache=true", "--build-arg", "V=7", "--skip-tls-verify", "--snapshot-mode=redo", "--use-new-run",
			"--digest-file", filepath.Join(dir, "digest"), "--image-name-with-digest-file", filepath.Join(dir, "names"),
			"--tar-path", filepath.Join(dir, "image.tar"), "--label", "org.opencontainers.image.revision=abc123")
	}
	so, se, code := job(filepath.Join(t.TempDir(), "a"))
	if code != 0 {
		t.Fatalf("kaniko job: exit %d\n%s%s", code, so, se)
	}
	digest := strings.TrimSpace(readFile(t, filepath.Join(dir, "digest")))
	if got := reg.skopeoInspect(t, dest).Digest; got != digest {
		t.Errorf("--digest-file %s, registry has %s", digest, got)
	}
	if names := strings.TrimSpace(readFile(t, filepath.Join(dir, "names"))); names != reg.host+"/kaniko/app@"+digest {
		t.Errorf("--image-name-with-digest-file: %q", names)
	}
	if fi, err := os.Stat(filepath.Join(dir, "image.tar")); err != nil || fi.Size() == 0 {
		t.Errorf("--tar-path: %v", err)
	}
	out := mustRun(t, "skopeo", "inspect", "--config", "--cert-dir", reg.certDir, "--creds", reg.user+":"+reg.pass, "docker://"+dest)
	if !strings.Contains(out, "abc123") {
		t.Errorf("--label missing from the config:\n%s", out)
	}
	// A second job on a fresh machine: every step from the inferred cache
	// repository (DEST's repository + /cache, as kaniko infers it).
	so, se, code = job(filepath.Join(t.TempDir(), "b"))
	if code != 0 || strings.Count(so, "--> Using cache") != 2 || strings.Contains(so, "| built") {
		t.Errorf("second job: exit %d, want 2 cache hits\n%s%s", code, so, se)
	}
	// What builder cannot honour is refused by name.
	for _, bad := range [][]string{{"--context", "s3://bucket/ctx.tgz"}, {"--registry-mirror", "mirror.example"}, {"--git", "branch=main"}} {
		if _, se, code := runAt("", nil, nil, append([]string{"kaniko", "--destination", dest}, bad...)...); code != 2 || !strings.Contains(se, strings.TrimPrefix(bad[0], "--")) {
			t.Errorf("kaniko %v: exit %d, want 2 naming it\n%s", bad, code, se)
		}
	}
}
