package tests

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// flags are the registry flags for r (TLS through the test CA, creds).
func (r *testRegistry) flags() []string {
	return []string{"--cert-dir", r.certDir, "--creds", r.user + ":" + r.pass}
}

// skopeoInspect runs skopeo inspect on docker://REF through the proxy.
func (r *testRegistry) skopeoInspect(t *testing.T, ref string) (info struct {
	Digest       string
	Architecture string
	Layers       []string
}) {
	t.Helper()
	out := mustRun(t, "skopeo", "inspect", "--cert-dir", r.certDir, "--creds", r.user+":"+r.pass, "docker://"+ref)
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("skopeo inspect %s: %v\n%s", ref, err, out)
	}
	return info
}

// runAt runs builder against the store under root (env.root when empty),
// with extra environment and stdin; it returns stdout, stderr and the exit code.
func runAt(root string, extraEnv []string, stdin []byte, args ...string) (string, string, int) {
	run := env.runroot
	if root == "" {
		root = env.root
	} else {
		run = root + "-run"
	}
	cmd := exec.Command(env.bin, append([]string{"--root", root, "--runroot", run, "--storage-driver", "vfs"}, args...)...)
	cmd.Env = append(os.Environ(), extraEnv...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	code := 0
	if err := cmd.Run(); err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return so.String(), se.String(), code
}

// must is runAt that fails the test on a non-zero exit.
func must(t *testing.T, root string, extraEnv []string, stdin []byte, args ...string) string {
	t.Helper()
	so, se, code := runAt(root, extraEnv, stdin, args...)
	if code != 0 {
		t.Fatalf("builder %s: exit %d\n%s%s", strings.Join(args, " "), code, so, se)
	}
	return so
}

// contextDir writes a build context: a Dockerfile and files.
func contextDir(t *testing.T, dockerfile string, files map[string]string) string {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644)
	for n, b := range files {
		os.WriteFile(filepath.Join(dir, n), []byte(b), 0o644)
	}
	return dir
}

// layerUploads counts finished uploads (PUT ...?digest=) of the given layers.
func layerUploads(reqs, layers []string) int {
	return count(reqs, func(m, u string) bool {
		if m != "PUT" || !strings.Contains(u, "/blobs/uploads/") {
			return false
		}
		for _, l := range layers {
			if strings.Contains(u, "digest="+strings.ReplaceAll(l, ":", "%3A")) {
				return true
			}
		}
		return false
	})
}

func poolOf(pemBytes []byte) *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(pemBytes)
	return p
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func blobFiles(t *testing.T, root string) int {
	ents, _ := os.ReadDir(filepath.Join(root, "builder", "blobs", "sha256"))
	return len(ents)
}

func TestRegistry(t *testing.T) {
	reg := startRegistry(t)
	p := reg.proxy
	img := reg.host + "/team/app:v1"
	build := contextDir(t, "FROM "+env.baseOCI+"\nCOPY hello.txt /hello.txt\n", map[string]string{"hello.txt": "hello registry\n"})
	must(t, "", nil, nil, "bud", "-q", "--timestamp", "1700000000", "-t", img, build)
	dir := t.TempDir()
	var pushed string // digest of img's first push

	t.Run("push", func(t *testing.T) {
		m := p.mark()
		df := filepath.Join(dir, "digest")
		must(t, "", nil, nil, append([]string{"push", "--digestfile", df}, append(reg.flags(), img)...)...)
		pushed = readFile(t, df)
		if got := reg.skopeoInspect(t, img).Digest; got != pushed {
			t.Errorf("skopeo inspect digest %s, pushed %s", got, pushed)
		}
		if n := uploads(p.since(m)); n < 2 {
			t.Errorf("%d blob uploads for a new image, want at least 2", n)
		}
	})

	t.Run("second-push-uploads-nothing", func(t *testing.T) {
		m := p.mark()
		out := must(t, "", nil, nil, append([]string{"push", "--log-level", "debug"}, append(reg.flags(), img)...)...)
		if n := uploads(p.since(m)); n != 0 {
			t.Errorf("second push started %d uploads:\n%s", n, strings.Join(p.since(m), "\n"))
		}
		if strings.Contains(out, reg.pass) {
			t.Error("the password appears in the output")
		}
	})

	t.Run("new-repo-mounts-and-recompresses-nothing", func(t *testing.T) {
		before, m := blobFiles(t, env.root), p.mark()
		df := filepath.Join(dir, "digest-other")
		must(t, "", nil, nil, append([]string{"push", "--digestfile", df}, append(reg.flags(), img, reg.host+"/other/app:v1")...)...)
		reqs := p.since(m)
		mounts := count(reqs, func(m, u string) bool { return m == "POST" && strings.Contains(u, "mount=") })
		// containers/image uploads the (small) config rather than mounting it.
		if n := layerUploads(reqs, reg.skopeoInspect(t, img).Layers); n != 0 || mounts == 0 {
			t.Errorf("push to a new repository: %d layer uploads, %d mounts; want 0 and >0\n%s", n, mounts, strings.Join(reqs, "\n"))
		}
		if after := blobFiles(t, env.root); after != before {
			t.Errorf("blob store went from %d to %d blobs: a layer was compressed again", before, after)
		}
		if d := readFile(t, df); d != pushed {
			t.Errorf("digest %s in the new repository, %s in the first", d, pushed)
		}
	})

	t.Run("skopeo-copy-back", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "oci")
		mustRun(t, "skopeo", "copy", "--src-cert-dir", reg.certDir, "--src-creds", reg.user+":"+reg.pass, "docker://"+img, "oci:"+out+":v1")
		if d := readLayout(t, out).mdigest; d != pushed {
			t.Errorf("copied back %s, pushed %s", d, pushed)
		}
	})

	t.Run("bud-push", func(t *testing.T) {
		ctx := contextDir(t, "FROM "+env.baseOCI+"\nCOPY b.txt /b.txt\n", map[string]string{"b.txt": "bud --push\n"})
		df := filepath.Join(dir, "digest-bud")
		ref := reg.host + "/team/app:v2"
		must(t, "", nil, nil, append([]string{"bud", "-q", "--push", "--digestfile", df, "-t", ref, "-t", "localhost/local-only:v2"}, append(reg.flags(), ctx)...)...)
		if got := reg.skopeoInspect(t, ref).Digest; got != readFile(t, df) {
			t.Errorf("skopeo inspect digest %s, --digestfile %s", got, readFile(t, df))
		}
	})

	t.Run("build-from-registry", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "root")
		ctx := contextDir(t, "FROM "+img+"\nCOPY x.txt /x.txt\n", map[string]string{"x.txt": "derived\n"})
		m := p.mark()
		must(t, root, nil, nil, append([]string{"bud", "-q", "-t", "localhost/derived"}, append(reg.flags(), ctx)...)...)
		if n := blobGets(p.since(m)); n == 0 {
			t.Fatal("the base was not fetched from the registry")
		}
		m = p.mark()
		must(t, root, nil, nil, append([]string{"bud", "-q", "--pull=always", "-t", "localhost/derived"}, append(reg.flags(), ctx)...)...)
		if n := blobGets(p.since(m)); n != 0 {
			t.Errorf("second build fetched %d blobs again", n)
		}
		// The pulled base keeps its compressed digests: pushing the derived
		// image sends only the new layer and the config.
		m = p.mark()
		ref := reg.host + "/team/derived:v1"
		must(t, root, nil, nil, append([]string{"push"}, append(reg.flags(), "localhost/derived", ref)...)...)
		base, derived := reg.skopeoInspect(t, img).Layers, reg.skopeoInspect(t, ref).Layers
		if len(derived) != len(base)+1 || derived[0] != base[0] {
			t.Errorf("derived layers %v do not start with the base's %v", derived, base)
		}
		if n := uploads(p.since(m)); n > 2 {
			t.Errorf("derived push uploaded %d blobs, want at most 2 (new layer, config)", n)
		}
	})

	t.Run("pull", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "root")
		want := strings.TrimSpace(must(t, "", nil, nil, "inspect", "--format", "{{.ID}}", img))
		for _, ref := range []string{img, reg.host + "/team/app@" + pushed} {
			if id := strings.TrimSpace(must(t, root, nil, nil, append([]string{"pull", "-q"}, append(reg.flags(), ref)...)...)); id != want {
				t.Errorf("pull %s: ID %s, want %s", ref, id, want)
			}
		}
	})

	t.Run("multi-platform-index", func(t *testing.T) { testIndex(t, reg) })

	t.Run("wrong-password", func(t *testing.T) {
		const bad = "not-the-Pa55word"
		for _, args := range [][]string{{"push", img}, {"pull", img}} {
			m, start := p.mark(), time.Now()
			root := "" // push from the test store, pull into a new one
			if args[0] == "pull" {
				root = filepath.Join(t.TempDir(), "root")
			}
			_, se, code := runAt(root, nil, nil, append([]string{args[0], "--cert-dir", reg.certDir, "--creds", reg.user + ":" + bad, "--retry", "3", "--retry-delay", "2s"}, args[1:]...)...)
			if code == 0 || !strings.Contains(strings.ToLower(se), "unauthorized") && !strings.Contains(se, "authentication required") {
				t.Errorf("%s with a wrong password: exit %d, want an unauthorized error:\n%s", args[0], code, se)
			}
			if strings.Contains(se, bad) || strings.Contains(se, "retrying") {
				t.Errorf("%s: error leaks the password or retried:\n%s", args[0], se)
			}
			if n := len(p.since(m)); n > 8 || time.Since(start) > 10*time.Second {
				t.Errorf("%s: %d requests in %s for a wrong password", args[0], n, time.Since(start))
			}
		}
	})

	t.Run("login-logout", func(t *testing.T) {
		auth := filepath.Join(t.TempDir(), "auth.json")
		base := []string{"--authfile", auth, "--cert-dir", reg.certDir}
		_, se, code := runAt("", nil, []byte("wrong\n"), append([]string{"login", "-u", reg.user, "--password-stdin"}, append(base, reg.host)...)...)
		if code == 0 || !strings.Contains(se, "rejected") || strings.Contains(se, "wrong") {
			t.Errorf("login with a wrong password: exit %d\n%s", code, se)
		}
		must(t, "", nil, []byte(reg.pass+"\n"), append([]string{"login", "-u", reg.user, "--password-stdin"}, append(base, reg.host)...)...)
		if b := readFile(t, auth); !strings.Contains(b, reg.host) {
			t.Fatalf("auth.json has no entry for %s:\n%s", reg.host, b)
		}
		must(t, "", nil, nil, "push", "--authfile", auth, "--cert-dir", reg.certDir, img, reg.host+"/login/app:v1")
		must(t, "", nil, nil, "logout", "--authfile", auth, reg.host)
		if b := readFile(t, auth); strings.Contains(b, reg.host) {
			t.Errorf("auth.json still has %s after logout:\n%s", reg.host, b)
		}
	})

	t.Run("bearer-token", func(t *testing.T) {
		p.set(nil, "", true)
		defer p.set(nil, "", false)
		m := p.mark()
		must(t, "", nil, nil, append([]string{"push"}, append(reg.flags(), img, reg.host+"/bearer/app:v1")...)...)
		must(t, filepath.Join(t.TempDir(), "root"), nil, nil, append([]string{"pull", "-q"}, append(reg.flags(), reg.host+"/bearer/app:v1")...)...)
		if count(p.since(m), func(_, u string) bool { return strings.HasPrefix(u, "/token") }) == 0 {
			t.Error("no token was requested")
		}
	})

	t.Run("tls", func(t *testing.T) {
		creds := []string{"--creds", reg.user + ":" + reg.pass, img}
		_, se, code := runAt(filepath.Join(t.TempDir(), "root"), nil, nil, append([]string{"pull", "-q", "--retry", "3", "--retry-delay", "2s"}, creds...)...)
		if code == 0 || !strings.Contains(se, "certificate") || strings.Contains(se, "retrying") {
			t.Errorf("pull without the CA: exit %d, want a certificate error and no retry:\n%s", code, se)
		}
		must(t, filepath.Join(t.TempDir(), "root"), nil, nil, append([]string{"pull", "-q", "--tls-verify=false"}, creds...)...)
		conf := filepath.Join(t.TempDir(), "registries.conf")
		os.WriteFile(conf, []byte(fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", reg.host)), 0o644)
		must(t, filepath.Join(t.TempDir(), "root"), []string{"CONTAINERS_REGISTRIES_CONF=" + conf}, nil, append([]string{"pull", "-q"}, creds...)...)
	})

	t.Run("faults", func(t *testing.T) { testFaults(t, reg) })
	t.Run("disk-full-and-bombs", func(t *testing.T) { testDiskFullAndBombs(t, reg) })
	t.Run("remote-cache", func(t *testing.T) { testRemoteCache(t, reg) })
	t.Run("short-names", func(t *testing.T) { testShortNames(t, reg, img) })
}

// testIndex pushes two single-platform images, puts an index over them and
// builds FROM the index for each platform.
func testIndex(t *testing.T, reg *testRegistry) {
	type entry struct {
		MediaType string            `json:"mediaType"`
		Digest    string            `json:"digest"`
		Size      int               `json:"size"`
		Platform  map[string]string `json:"platform"`
	}
	var entries []entry
	for _, pl := range []struct{ os, arch, variant string }{{"linux", "amd64", ""}, {"linux", "arm64", "v8"}} {
		ref := reg.host + "/multi:" + pl.arch
		ctx := contextDir(t, "FROM scratch\nCOPY arch.txt /arch.txt\n", map[string]string{"arch.txt": pl.arch})
		platform := pl.os + "/" + pl.arch
		if pl.variant != "" {
			platform += "/" + pl.variant
		}
		df := filepath.Join(t.TempDir(), "digest")
		must(t, "", nil, nil, append([]string{"bud", "-q", "--platform", platform, "--push", "--digestfile", df, "-t", ref}, append(reg.flags(), ctx)...)...)
		raw := mustRun(t, "skopeo", "inspect", "--raw", "--cert-dir", reg.certDir, "--creds", reg.user+":"+reg.pass, "docker://"+ref)
		e := entry{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: readFile(t, df), Size: len(raw),
			Platform: map[string]string{"os": pl.os, "architecture": pl.arch}}
		if pl.variant != "" {
			e.Platform["variant"] = pl.variant
		}
		entries = append(entries, e)
	}
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries})
	req, _ := http.NewRequest(http.MethodPut, "https://"+reg.host+"/v2/multi/manifests/latest", bytes.NewReader(index))
	req.Header.Set("Content-Type", "application/vnd.oci.image.index.v1+json")
	req.SetBasicAuth(reg.user, reg.pass)
	pool, _ := os.ReadFile(filepath.Join(reg.certDir, "ca.crt"))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: poolOf(pool)}}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("putting the index: %v %v", err, resp)
	}
	resp.Body.Close()

	root := filepath.Join(t.TempDir(), "root")
	for _, arch := range []string{"arm64", "amd64"} { // arm64 first: not this machine's
		ctx := contextDir(t, "FROM "+reg.host+"/multi:latest\nCOPY y.txt /y.txt\n", map[string]string{"y.txt": "y"})
		tag := "localhost/from-index-" + arch
		must(t, root, nil, nil, append([]string{"bud", "-q", "--platform", "linux/" + arch, "-t", tag}, append(reg.flags(), ctx)...)...)
		var info struct {
			Config struct {
				Architecture string `json:"architecture"`
				RootFS       struct {
					DiffIDs []string `json:"diff_ids"`
				} `json:"rootfs"`
			}
		}
		json.Unmarshal([]byte(must(t, root, nil, nil, "inspect", tag)), &info)
		var base struct {
			Config struct {
				RootFS struct {
					DiffIDs []string `json:"diff_ids"`
				} `json:"rootfs"`
			}
		}
		json.Unmarshal([]byte(must(t, "", nil, nil, "inspect", reg.host+"/multi:"+arch)), &base)
		if info.Config.Architecture != arch || len(info.Config.RootFS.DiffIDs) != 2 || len(base.Config.RootFS.DiffIDs) != 1 ||
			info.Config.RootFS.DiffIDs[0] != base.Config.RootFS.DiffIDs[0] {
			t.Errorf("FROM the index for %s: architecture %q, layers %v; the %s image's layers %v",
				arch, info.Config.Architecture, info.Config.RootFS.DiffIDs, arch, base.Config.RootFS.DiffIDs)
		}
	}
}

// testFaults pushes and pulls through dropped connections, resets, 500s and
// truncated bodies, then pulls a blob whose content does not match its digest.
func testFaults(t *testing.T, reg *testRegistry) {
	p := reg.proxy
	on := func(method, part string) func(*http.Request) bool {
		return func(r *http.Request) bool { return r.Method == method && strings.Contains(r.URL.Path, part) }
	}
	ref := reg.host + "/faulty/app:v1"
	ctx := contextDir(t, "FROM "+env.baseOCI+"\nCOPY f.txt /f.txt\n", map[string]string{"f.txt": strings.Repeat("fault tolerant\n", 20000)})
	must(t, "", nil, nil, "bud", "-q", "--timestamp", "1700000000", "-t", ref, ctx)
	retry := []string{"--retry", "6", "--retry-delay", "100ms"}

	p.set([]fault{
		{on("POST", "/blobs/uploads/"), "drop"},
		{on("PATCH", "/blobs/uploads/"), "reset"},
		{on("PUT", "/blobs/uploads/"), "500"},
		{on("PUT", "/manifests/"), "500"},
	}, "", false)
	df := filepath.Join(t.TempDir(), "digest")
	must(t, "", nil, nil, append(append([]string{"push", "--digestfile", df}, retry...), append(reg.flags(), ref)...)...)
	if p.firedN() != 4 {
		t.Errorf("%d of 4 push faults fired", p.firedN())
	}
	p.set(nil, "", false)
	clean := filepath.Join(t.TempDir(), "digest")
	must(t, "", nil, nil, append([]string{"push", "--digestfile", clean}, append(reg.flags(), ref, reg.host+"/clean/app:v1")...)...)
	if readFile(t, df) != readFile(t, clean) {
		t.Errorf("digest with faults %s, without %s", readFile(t, df), readFile(t, clean))
	}

	p.set([]fault{
		{on("GET", "/manifests/"), "500"},
		{on("GET", "/blobs/sha256:"), "truncate"},
		{on("GET", "/blobs/sha256:"), "drop"},
		{on("GET", "/blobs/sha256:"), "reset"},
	}, "", false)
	want := strings.TrimSpace(must(t, "", nil, nil, "inspect", "--format", "{{.ID}}", ref))
	id := must(t, filepath.Join(t.TempDir(), "root"), nil, nil, append(append([]string{"pull", "-q"}, retry...), append(reg.flags(), ref)...)...)
	if strings.TrimSpace(id) != want {
		t.Errorf("pulled %s through faults, want %s", id, want)
	}
	if p.firedN() != 4 {
		t.Errorf("%d of 4 pull faults fired", p.firedN())
	}

	// Faults beyond --retry: the error names the registry, the operation
	// and the blob, and no tag points at the partial image.
	half := reg.host + "/faulty/half:v1"
	ctx = contextDir(t, "FROM "+env.baseOCI+"\nCOPY h.txt /h.txt\n", map[string]string{"h.txt": "half pushed\n"})
	must(t, "", nil, nil, "bud", "-q", "-t", half, ctx)
	p.set([]fault{{on("PATCH", "/blobs/uploads/"), "500"}, {on("PATCH", "/blobs/uploads/"), "reset"}}, "", false)
	_, se, code := runAt("", nil, nil, append([]string{"push", "--retry", "1", "--retry-delay", "10ms"}, append(reg.flags(), half)...)...)
	if code == 0 || !strings.Contains(se, "push to "+half) || !strings.Contains(se, "(registry "+reg.host+")") ||
		!strings.Contains(se, "blob sha256:") || !strings.Contains(se, "failed after 2 tries") {
		t.Errorf("push beyond --retry: exit %d, want an error naming registry, operation and blob:\n%s", code, se)
	}
	p.set(nil, "", false)
	if out, err := exec.Command("skopeo", "inspect", "--cert-dir", reg.certDir, "--creds", reg.user+":"+reg.pass, "docker://"+half).CombinedOutput(); err == nil {
		t.Errorf("a failed push left a tag:\n%s", out)
	}

	// Every request fails twice, a 500 then a reset: each request has its
	// own retry budget, so --retry 2 gets a push and a pull through, and
	// --retry 1 does not.
	twice := reg.host + "/faulty/twice:v1"
	tctx := contextDir(t, "FROM "+env.baseOCI+"\nCOPY t.txt /t.txt\n", map[string]string{"t.txt": "every request fails twice\n"})
	must(t, "", nil, nil, "bud", "-q", "-t", twice, tctx)
	fast := []string{"--retry-delay", "10ms"}
	p.failTwice()
	must(t, "", nil, nil, append(append([]string{"push", "--retry", "2"}, fast...), append(reg.flags(), twice)...)...)
	p.failTwice()
	must(t, filepath.Join(t.TempDir(), "root"), nil, nil, append(append([]string{"pull", "-q", "--retry", "2"}, fast...), append(reg.flags(), twice)...)...)
	p.failTwice()
	if _, se, code := runAt(filepath.Join(t.TempDir(), "root"), nil, nil, append(append([]string{"pull", "-q", "--retry", "1"}, fast...), append(reg.flags(), twice)...)...); code == 0 {
		t.Errorf("pull with --retry 1 through requests that each fail twice succeeded:\n%s", se)
	}
	p.set(nil, "", false)

	// An upload Location on another host would get the registry's
	// credentials from containers/image: the push stops before it sends
	// anything there.
	other := reg.host + "/faulty/other:v1"
	octx := contextDir(t, "FROM "+env.baseOCI+"\nCOPY o.txt /o.txt\n", map[string]string{"o.txt": "uploaded elsewhere?\n"})
	must(t, "", nil, nil, "bud", "-q", "-t", other, octx)
	newUpload := func(r *http.Request) bool { // not a cross-repository mount
		return r.Method == "POST" && strings.Contains(r.URL.Path, "/blobs/uploads/") && r.URL.Query().Get("mount") == ""
	}
	p.set([]fault{{newUpload, "otherhost"}}, "", false)
	m0 := p.mark()
	if _, se, code := runAt("", nil, nil, append([]string{"push", "--retry", "0"}, append(reg.flags(), other)...)...); code == 0 ||
		!strings.Contains(se, "asked for a request to localhost:") || !strings.Contains(se, "credentials only to that registry") {
		t.Errorf("push whose upload Location names another host: exit %d:\n%s", code, se)
	}
	for _, h := range p.hostsSince(m0) {
		if strings.HasPrefix(h, "localhost:") {
			t.Errorf("a request reached the other host %s", h)
		}
	}
	p.set(nil, "", false)

	// A blob download that stops moving is abandoned after --stall-timeout
	// and retried.
	p.set([]fault{{on("GET", "/blobs/sha256:"), "stall"}}, "", false)
	start := time.Now()
	must(t, filepath.Join(t.TempDir(), "root"), nil, nil, append([]string{"pull", "-q", "--stall-timeout", "2s", "--retry-delay", "10ms"}, append(reg.flags(), twice)...)...)
	if p.firedN() != 1 || time.Since(start) > time.Minute {
		t.Errorf("stalled pull: %d faults fired, %s", p.firedN(), time.Since(start))
	}
	p.set(nil, "", false)

	// A registry whose manifest gives a layer the wrong size (its digest
	// true): every pull path refuses it, naming the blob, with no retry.
	layers := reg.skopeoInspect(t, ref).Layers
	for _, lie := range []string{"size-3", "size+4096"} {
		p.set([]fault{{on("GET", "/manifests/"), lie}}, "", false)
		root := filepath.Join(t.TempDir(), "root")
		_, se, code := runAt(root, nil, nil, append([]string{"pull", "-q", "--retry", "0"}, append(reg.flags(), ref)...)...)
		if code == 0 || !strings.Contains(se, layers[len(layers)-1]) || !strings.Contains(se, "does not match its descriptor") {
			t.Errorf("pull with %s: exit %d, want an error naming %s and its size:\n%s", lie, code, layers[len(layers)-1], se)
		}
		p.set([]fault{{on("GET", "/manifests/"), lie}}, "", false)
		fctx := contextDir(t, "FROM "+ref+"\nRUN true\n", nil)
		_, se, code = runAt(root, nil, nil, append([]string{"bud", "--retry", "0"}, append(reg.flags(), fctx)...)...)
		if code == 0 || !strings.Contains(se, "does not match its descriptor") {
			t.Errorf("FROM with %s: exit %d:\n%s", lie, code, se)
		}
		p.set([]fault{{on("GET", "/manifests/"), lie}}, "", false)
		cctx := contextDir(t, "FROM scratch\nCOPY --from="+ref+" /f.txt /f.txt\n", nil)
		_, se, code = runAt(root, nil, nil, append([]string{"bud", "--retry", "0"}, append(reg.flags(), cctx)...)...)
		if code == 0 || !strings.Contains(se, "does not match its descriptor") {
			t.Errorf("COPY --from with %s: exit %d:\n%s", lie, code, se)
		}
	}
	p.set(nil, "", false)
	bad := layers[len(layers)-1]
	p.set(nil, bad, false)
	defer p.set(nil, "", false)
	_, se, code = runAt(filepath.Join(t.TempDir(), "root"), nil, nil, append([]string{"pull", "-q", "--retry", "1", "--retry-delay", "10ms"}, append(reg.flags(), ref)...)...)
	if code == 0 || !strings.Contains(se, bad) {
		t.Errorf("pull of a corrupt blob: exit %d, want an error naming %s:\n%s", code, bad, se)
	}
}

// testShortNames resolves short names through registries.conf.
func testShortNames(t *testing.T, reg *testRegistry, img string) {
	conf := func(regs ...string) []string {
		f := filepath.Join(t.TempDir(), "registries.conf")
		q := make([]string, len(regs))
		for i, r := range regs {
			q[i] = fmt.Sprintf("%q", r)
		}
		os.WriteFile(f, []byte(fmt.Sprintf("unqualified-search-registries = [%s]\nshort-name-mode = \"enforcing\"\n[aliases]\n\"myalias\" = %q\n",
			strings.Join(q, ", "), reg.host+"/team/app")), 0o644)
		return []string{"CONTAINERS_REGISTRIES_CONF=" + f}
	}
	want := strings.TrimSpace(must(t, "", nil, nil, "inspect", "--format", "{{.ID}}", img))
	for _, name := range []string{"team/app:v1", "myalias:v1"} {
		id := must(t, filepath.Join(t.TempDir(), "root"), conf(reg.host), nil, append([]string{"pull", "-q"}, append(reg.flags(), name)...)...)
		if strings.TrimSpace(id) != want {
			t.Errorf("pull %s: %s, want %s", name, id, want)
		}
	}
	_, se, code := runAt(filepath.Join(t.TempDir(), "root"), conf(reg.host, "127.0.0.1:1"), nil, append([]string{"pull"}, append(reg.flags(), "team/app:v1")...)...)
	if code == 0 || !strings.Contains(se, "ambiguous") || !strings.Contains(se, "127.0.0.1:1/team/app:v1") {
		t.Errorf("ambiguous short name: exit %d\n%s", code, se)
	}
}

// Two stores standing for two CI machines share one cache repository: the
// second build, with an empty store, hits every step and gives the first's
// image; a repository with no entries is a plain miss.
func testRemoteCache(t *testing.T, reg *testRegistry) {
	repo := reg.host + "/cache/app"
	ctx := contextDir(t, "FROM "+env.baseOCI+"\nCOPY a.txt /a.txt\nRUN echo RAN-1 && cp /a.txt /b.txt\nRUN echo RAN-2 && true\n",
		map[string]string{"a.txt": "shared cache\n"})
	flags := append([]string{"bud", "--timestamp", "1700000000"}, reg.flags()...)
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	idA := must(t, a, nil, nil, append(flags, "--cache-to", repo, "-q", ctx)...)
	out := must(t, b, nil, nil, append(flags, "--cache-from", repo, ctx)...)
	if !strings.Contains(out, "--> Cache: probed 3 keys in "+repo+" at once, 3 found") {
		t.Errorf("keys were not probed up front:\n%s", out)
	}
	if n := strings.Count(out, "--> Using cache"); n != 3 || len(ran(out)) != 0 {
		t.Errorf("second machine: %d cache hits, ran %v, want 3 and none\n%s", n, ran(out), out)
	}
	if !strings.HasSuffix(strings.TrimSpace(out), strings.TrimSpace(idA)) {
		t.Errorf("second machine built another image (first %s):\n%s", idA, out)
	}
	// A cache mount leaves the machine only when asked (its contents may be
	// private); then it is warm on a fresh one.
	mctx := contextDir(t, "FROM "+env.baseOCI+"\nRUN --mount=type=cache,id=pkgs,target=/var/cache/pkgs echo MOUNT-$(cat /var/cache/pkgs/x 2>/dev/null || echo cold) && echo filled-on-a > /var/cache/pkgs/x\n", nil)
	if out := must(t, a, nil, nil, append(flags, "--cache-to", repo, mctx)...); !strings.Contains(out, "MOUNT-cold") {
		t.Errorf("first use of the cache mount was not cold:\n%s", out)
	}
	e := filepath.Join(t.TempDir(), "e")
	if out := must(t, e, nil, nil, append(flags, "--no-cache", "--cache-from", repo, mctx)...); !strings.Contains(out, "MOUNT-cold") {
		t.Errorf("a cache mount was exported without mounts=true:\n%s", out)
	}
	must(t, a, nil, nil, append(flags, "--no-cache", "--cache-to", repo+",mounts=true", mctx)...)
	d := filepath.Join(t.TempDir(), "d")
	if out := must(t, d, nil, nil, append(flags, "--no-cache", "--cache-from", repo, mctx)...); !strings.Contains(out, "MOUNT-filled-on-a") {
		t.Errorf("a fresh store did not see the cache mount filled by another through the registry:\n%s", out)
	}
	// A third store against an empty repository: every step runs.
	c := filepath.Join(t.TempDir(), "c")
	so, se, code := runAt(c, nil, nil, append(flags, "--cache-from", "docker://"+repo+"-missing", ctx)...)
	if code != 0 || len(ran(so+se)) != 2 {
		t.Errorf("build with an empty cache repository: exit %d, ran %v\n%s%s", code, ran(so+se), so, se)
	}
}

// A full disk is no transient failure: a pull into a store on a small
// tmpfs fails at the first try, leaves no partial layer, and the store
// still takes a small build. A layer that inflates past --max-layer-size
// (a gzip bomb) fails while it is downloaded, before anything is written.
func testDiskFullAndBombs(t *testing.T, reg *testRegistry) {
	mnt := t.TempDir()
	mustRun(t, "mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt)
	defer exec.Command("umount", "-l", mnt).Run()
	root := filepath.Join(mnt, "root")

	big := reg.host + "/faulty/big:v1"
	bctx := contextDir(t, "FROM scratch\nCOPY big.bin /big.bin\n", nil)
	mustRun(t, "sh", "-c", "head -c 40000000 /dev/urandom > "+filepath.Join(bctx, "big.bin"))
	must(t, "", nil, nil, append([]string{"bud", "-q", "--push", "-t", big}, append(reg.flags(), bctx)...)...)
	start := time.Now()
	_, se, code := runAt(root, nil, nil, append([]string{"pull", "-q", "--retry", "3"}, append(reg.flags(), big)...)...)
	if code == 0 || !strings.Contains(se, "no space left on device") || strings.Contains(se, "retrying") || strings.Contains(se, "failed after") {
		t.Errorf("pull onto a full disk: exit %d, want one try ending in ENOSPC:\n%s", code, se)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("pull onto a full disk took %s", d)
	}
	small := contextDir(t, "FROM scratch\nCOPY s.txt /s.txt\n", map[string]string{"s.txt": "small\n"})
	must(t, root, nil, nil, "bud", "-q", "-t", "localhost/after-full", small)
	if out := mustRun(t, "du", "-sm", mnt); !strings.HasPrefix(out, "0\t") && !strings.HasPrefix(out, "1\t") && !strings.HasPrefix(out, "2\t") {
		t.Errorf("the store keeps what the failed pull wrote: %s", out)
	}

	bomb := reg.host + "/faulty/bomb:v1"
	zctx := contextDir(t, "FROM scratch\nCOPY zeros /zeros\n", nil)
	mustRun(t, "sh", "-c", "head -c 200000000 /dev/zero > "+filepath.Join(zctx, "zeros"))
	must(t, "", nil, nil, append([]string{"bud", "-q", "--push", "-t", bomb}, append(reg.flags(), zctx)...)...)
	broot := filepath.Join(t.TempDir(), "root")
	_, se, code = runAt(broot, nil, nil, append([]string{"pull", "-q", "--max-layer-size", "50MB"}, append(reg.flags(), bomb)...)...)
	if code == 0 || !strings.Contains(se, "larger than --max-layer-size") || strings.Contains(se, "retrying") {
		t.Errorf("pull of a layer over --max-layer-size: exit %d:\n%s", code, se)
	}
	if out := mustRun(t, "du", "-sm", broot); !strings.HasPrefix(out, "0\t") && !strings.HasPrefix(out, "1\t") {
		t.Errorf("the refused layer left data behind: %s", out)
	}
}
