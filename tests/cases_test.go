package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// caseFlags reads testdata/dockerfiles/<case>/flags: one builder bud flag per
// line, with ${BASE_OCI} and ${URL} substituted.
func caseFlags(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "flags"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.ReplaceAll(line, "${BASE_OCI}", env.baseOCI)
		line = strings.ReplaceAll(line, "${URL}", env.url)
		line = strings.ReplaceAll(line, "${CASE}", dir)
		out = append(out, line)
	}
	return out
}

// TestDockerfiles builds every case under testdata/dockerfiles. A case with
// error.golden must fail: its first line is the exit code, the rest must
// appear in stderr. Any other case is built to an OCI layout with a fixed
// timestamp and compared with expect.golden: config, layer count and every
// entry of the layers it added. The layout is also checked by skopeo and umoci.
func TestDockerfiles(t *testing.T) {
	root := filepath.Join(env.repo, "testdata", "dockerfiles")
	dirs, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		n++
		name := d.Name()
		dir := filepath.Join(root, name)
		t.Run(name, func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(dir, "error.golden")); err == nil {
				runFailingCase(t, name, dir)
				return
			}
			runCase(t, name, dir, nil)
		})
	}
	if n < 25 {
		t.Errorf("only %d cases under testdata/dockerfiles; want at least 25", n)
	}
}

func runFailingCase(t *testing.T, name, dir string) {
	args := append([]string{"bud", "--timestamp", "1700000000"}, caseFlags(t, dir)...)
	args = append(args, dir)
	_, stderr, code := builderSplit(nil, args...)
	stderr = strings.ReplaceAll(stderr, env.url, "${URL}")
	golden := filepath.Join(dir, "error.golden")
	want, _ := os.ReadFile(golden)
	first, rest, _ := strings.Cut(strings.TrimSpace(string(want)), "\n")
	got := fmt.Sprintf("exit %d", code)
	if *update {
		msg := lastErrorLine(stderr)
		os.WriteFile(golden, []byte(got+"\n"+msg+"\n"), 0o644)
		return
	}
	if got != strings.TrimSpace(first) {
		t.Errorf("%s: got %s, want %s\nstderr:\n%s", name, got, first, stderr)
	}
	if rest = strings.TrimSpace(rest); rest == "" || !strings.Contains(stderr, rest) {
		t.Errorf("%s: stderr does not contain %q:\n%s", name, rest, stderr)
	}
}

func lastErrorLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "Error: ") {
			return strings.TrimPrefix(l, "Error: ")
		}
	}
	return strings.TrimSpace(s)
}

// TestDockerfilesOverlay builds the cases again as a rootless user would
// store them, in an overlay store with the overlay snapshotter: COPY then
// writes the new layer's directory unmounted and the store commit moves
// the layer trees into containers/storage. Every image must match the same
// golden file.
func TestDockerfilesOverlay(t *testing.T) {
	root := filepath.Join(env.repo, "testdata", "dockerfiles")
	dirs, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(env.tmp, "cases-overlay")
	globals := []string{"--root", store + "/root", "--runroot", store + "/run", "--storage-driver", "overlay"}
	// The cases' "FROM busybox", as the suite's setup made it in its store.
	if so, se, code := builderWith(globals, nil, "bud", "-q", "--timestamp", "1700000000", "-t", "localhost/busybox:latest", filepath.Join(env.tmp, "base")); code != 0 {
		t.Fatalf("base image in the overlay store: exit %d\n%s%s", code, so, se)
	}
	for _, d := range dirs {
		dir := filepath.Join(root, d.Name())
		if _, err := os.Stat(filepath.Join(dir, "error.golden")); !d.IsDir() || err == nil {
			continue
		}
		t.Run(d.Name(), func(t *testing.T) { runCase(t, d.Name(), dir, globals) })
	}
}

// runCase builds a case and checks it against its golden file; globals
// replace the suite's store flags when set.
func runCase(t *testing.T, name, dir string, globals []string) {
	out := filepath.Join(t.TempDir(), "oci")
	tag := "localhost/case-" + name + ":latest"
	args := append([]string{"bud", "--timestamp", "1700000000", "-t", tag, "-o", "type=oci,dest=" + out}, caseFlags(t, dir)...)
	args = append(args, dir)
	run := builderSplit
	if globals != nil {
		run = func(stdin []byte, args ...string) (string, string, int) {
			return builderWith(globals, stdin, args...)
		}
		if *update {
			t.Skip("goldens are written by TestDockerfiles")
		}
	}
	stdout, stderr, code := run(nil, args...)
	if code != 0 {
		t.Fatalf("build failed (exit %d):\n%s\n%s", code, stdout, stderr)
	}
	l := readLayout(t, out)
	base := readLayout(t, strings.TrimSuffix(strings.TrimPrefix(env.baseOCI, "oci:"), ":latest"))
	// The ADD test server's port changes per run; golden files say ${URL}.
	got := strings.ReplaceAll(renderImage(t, l, base), env.url, "${URL}")
	golden := filepath.Join(dir, "expect.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	} else {
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test ./tests -update to create it)", err)
		}
		if string(want) != got {
			t.Errorf("result differs from %s:\n%s", golden, diffText(string(want), got))
		}
	}
	// Independent validation of the OCI layout.
	mustRun(t, "skopeo", "inspect", "oci:"+out+":latest")
	bundle := filepath.Join(t.TempDir(), "bundle")
	mustRun(t, "umoci", "unpack", "--rootless", "--image", out+":latest", bundle)
	// The local store has it under the tag, with the config digest as ID.
	so, se, code := run(nil, "inspect", tag)
	if code != 0 {
		t.Fatalf("inspect %s: %s", tag, se)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(so), &info); err != nil {
		t.Fatalf("inspect output: %v\n%s", err, so)
	}
	if id, _ := info["Id"].(string); "sha256:"+id != l.manifest.Config.Digest.String() && id != l.manifest.Config.Digest.String() {
		t.Errorf("store image ID %q != config digest %s", id, l.manifest.Config.Digest)
	}
}

// renderImage renders the config (base diff_ids elided) and the entries of
// each layer the build added on top of its base.
func renderImage(t *testing.T, l, base *layout) string {
	var b strings.Builder
	nBase := 0
	if usesBase(l, base) {
		nBase = len(base.manifest.Layers)
	}
	cfg := l.config
	if rootfs, ok := cfg["rootfs"].(map[string]any); ok {
		if ids, ok := rootfs["diff_ids"].([]any); ok {
			for i := 0; i < nBase && i < len(ids); i++ {
				ids[i] = "<base>"
			}
		}
	}
	js, _ := json.MarshalIndent(cfg, "", "  ")
	fmt.Fprintf(&b, "# config\n%s\n", js)
	fmt.Fprintf(&b, "# layers: %d (base %d)\n", len(l.manifest.Layers), nBase)
	for i := nBase; i < len(l.manifest.Layers); i++ {
		fmt.Fprintf(&b, "# layer %d %s\n", i, l.manifest.Layers[i].MediaType)
		for _, e := range l.layerEntries(t, i) {
			fmt.Fprintln(&b, e.line)
		}
	}
	return b.String()
}

func usesBase(l, base *layout) bool {
	ids := diffIDs(l)
	bids := diffIDs(base)
	if len(bids) == 0 || len(ids) < len(bids) {
		return false
	}
	for i := range bids {
		if ids[i] != bids[i] {
			return false
		}
	}
	return true
}

func diffIDs(l *layout) []string {
	var out []string
	if rootfs, ok := l.config["rootfs"].(map[string]any); ok {
		ids, _ := rootfs["diff_ids"].([]any)
		for _, id := range ids {
			s, _ := id.(string)
			out = append(out, s)
		}
	}
	return out
}

func diffText(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			fmt.Fprintf(&b, "line %d:\n- %s\n+ %s\n", i+1, w, g)
		}
	}
	return b.String()
}

var _ = exec.Command
