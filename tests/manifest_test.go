package tests

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

// manifestIndex is what the tests read of a list: the fields podman,
// buildah, skopeo and builder must agree on.
type manifestIndex struct {
	SchemaVersion int    `json:"schemaVersion"`
	MediaType     string `json:"mediaType"`
	Manifests     []struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
		Platform  struct {
			Architecture string   `json:"architecture"`
			OS           string   `json:"os"`
			Variant      string   `json:"variant"`
			OSVersion    string   `json:"os.version"`
			Features     []string `json:"features"`
		} `json:"platform"`
		Annotations map[string]string `json:"annotations"`
	} `json:"manifests"`
}

func parseIndex(t *testing.T, what, s string) manifestIndex {
	t.Helper()
	var idx manifestIndex
	if err := json.Unmarshal([]byte(s), &idx); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, s)
	}
	if idx.SchemaVersion != 2 {
		t.Fatalf("%s: schemaVersion %d\n%s", what, idx.SchemaVersion, s)
	}
	return idx
}

// entries renders each entry as "digest size os/arch[/variant]" for comparing.
func (idx manifestIndex) entries() []string {
	var out []string
	for _, m := range idx.Manifests {
		p := m.Platform.OS + "/" + m.Platform.Architecture
		if m.Platform.Variant != "" {
			p += "/" + m.Platform.Variant
		}
		out = append(out, strings.Join([]string{m.Digest, itoa(m.Size), p}, " "))
	}
	return out
}

func (idx manifestIndex) platforms() []string {
	var out []string
	for _, e := range idx.entries() {
		out = append(out, strings.Fields(e)[2])
	}
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// storeFlags point podman and buildah at the tests' private store.
func storeFlags(args ...string) []string {
	return append([]string{"--root", env.root, "--runroot", env.runroot, "--storage-driver", "vfs"}, args...)
}

// localImage is what `builder inspect` says of a local image.
func localImage(t *testing.T, name string) (id, manifestDigest string, size int) {
	t.Helper()
	var info struct {
		ID       string          `json:"Id"`
		Digest   string          `json:"Digest"`
		Manifest json.RawMessage `json:"Manifest"`
	}
	if err := json.Unmarshal([]byte(must(t, "", nil, nil, "inspect", name)), &info); err != nil {
		t.Fatal(err)
	}
	// The manifest as stored (inspect prints it indented).
	var man bytes.Buffer
	if err := json.Compact(&man, info.Manifest); err != nil || digest.FromBytes(man.Bytes()).String() != info.Digest {
		t.Fatalf("inspect %s: manifest %s does not have digest %s (%v)", name, info.Manifest, info.Digest, err)
	}
	return info.ID, info.Digest, man.Len()
}

// addedDigest checks `manifest add`/`remove` output, "LISTID: DIGEST", and returns DIGEST.
func addedDigest(t *testing.T, out, listID string) string {
	t.Helper()
	id, d, ok := strings.Cut(strings.TrimSpace(out), ": ")
	if !ok || id != listID || digest.Digest(d).Validate() != nil {
		t.Fatalf("output %q, want %q: DIGEST", out, listID)
	}
	return d
}

// expectFail runs builder, wants a non-zero exit (code, when not 0) and
// stderr naming each of wants.
func expectFail(t *testing.T, code int, wants []string, args ...string) {
	t.Helper()
	so, se, got := runAt("", nil, nil, args...)
	t.Logf("builder %s: exit %d: %s", strings.Join(args, " "), got, strings.TrimSpace(se))
	if got == 0 || (code != 0 && got != code) {
		t.Errorf("builder %s: exit %d, want %d (non-zero)\n%s%s", strings.Join(args, " "), got, code, so, se)
	}
	for _, w := range wants {
		if !strings.Contains(se, w) {
			t.Errorf("builder %s: stderr %q lacks %q", strings.Join(args, " "), se, w)
		}
	}
}

func TestManifest(t *testing.T) {
	host := runtime.GOARCH
	ctxA := contextDir(t, "FROM scratch\nCOPY a.txt /a.txt\n", map[string]string{"a.txt": "manifest test a\n"})
	ctxB := contextDir(t, "FROM scratch\nCOPY b.txt /b.txt\n", map[string]string{"b.txt": "manifest test b\n"})
	must(t, "", nil, nil, "bud", "-q", "-t", "localhost/mf-a", ctxA)
	must(t, "", nil, nil, "bud", "-q", "-t", "localhost/mf-b", ctxB)
	idA, digestA, sizeA := localImage(t, "localhost/mf-a")
	idB, digestB, sizeB := localImage(t, "localhost/mf-b")

	const list = "localhost/mf-list:v1"
	listID := strings.TrimSpace(must(t, "", nil, nil, "manifest", "create", list))
	if len(listID) != 64 {
		t.Fatalf("manifest create printed %q, want the list's ID", listID)
	}
	expectFail(t, 0, []string{"already exists", "--amend"}, "manifest", "create", list)
	if got := addedDigest(t, must(t, "", nil, nil, "manifest", "add", list, "localhost/mf-a"), listID); got != digestA {
		t.Errorf("add printed %s, want mf-a's manifest digest %s", got, digestA)
	}
	if got := addedDigest(t, must(t, "", nil, nil, "manifest", "add", "--arch", "arm64", "--annotation", "org.example.k=v",
		list, "localhost/mf-b"), listID); got != digestB {
		t.Errorf("add printed %s, want mf-b's manifest digest %s", got, digestB)
	}
	// --amend adds to the existing list; re-adding an instance replaces it in place.
	if got := strings.TrimSpace(must(t, "", nil, nil, "manifest", "create", "--amend", list, "localhost/mf-a")); got != listID {
		t.Errorf("create --amend printed %s, want %s", got, listID)
	}

	want := []string{
		digestA + " " + itoa(int64(sizeA)) + " linux/" + host,
		digestB + " " + itoa(int64(sizeB)) + " linux/arm64",
	}
	var ours manifestIndex
	t.Run("inspect-agrees-with-podman-and-buildah", func(t *testing.T) {
		out := must(t, "", nil, nil, "manifest", "inspect", list)
		if !strings.Contains(out, "\n    \"manifests\": [") {
			t.Errorf("inspect output is not indented as buildah's:\n%s", out)
		}
		ours = parseIndex(t, "builder manifest inspect", out)
		if ours.MediaType != "application/vnd.oci.image.index.v1+json" {
			t.Errorf("list type %s, want an OCI index", ours.MediaType)
		}
		if got := ours.entries(); !slices.Equal(got, want) {
			t.Errorf("builder: entries %q, want %q", got, want)
		}
		if a := ours.Manifests[1].Annotations; a["org.example.k"] != "v" {
			t.Errorf("annotations of the arm64 entry: %v", a)
		}
		for _, tool := range []string{"podman", "buildah"} {
			idx := parseIndex(t, tool, mustRun(t, tool, storeFlags("manifest", "inspect", list)...))
			if got := idx.entries(); !slices.Equal(got, want) {
				t.Errorf("%s: entries %q, want %q", tool, got, want)
			}
			if len(idx.Manifests) == 2 && idx.Manifests[1].Annotations["org.example.k"] != "v" {
				t.Errorf("%s: annotations of the arm64 entry: %v", tool, idx.Manifests[1].Annotations)
			}
		}
	})

	t.Run("buildah-list-read-and-changed-by-builder", func(t *testing.T) {
		const bl = "localhost/mf-buildah:latest"
		blID := strings.TrimSpace(mustRun(t, "buildah", storeFlags("manifest", "create", bl)...))
		mustRun(t, "buildah", storeFlags("manifest", "add", "--arch", "s390x", bl, "localhost/mf-a")...)
		idx := parseIndex(t, "builder manifest inspect", must(t, "", nil, nil, "manifest", "inspect", bl))
		if got, w := idx.entries(), []string{digestA + " " + itoa(int64(sizeA)) + " linux/s390x"}; !slices.Equal(got, w) {
			t.Errorf("buildah's list read by builder: %q, want %q", got, w)
		}
		if got := addedDigest(t, must(t, "", nil, nil, "manifest", "add", bl, "localhost/mf-b"), blID); got != digestB {
			t.Errorf("add to buildah's list printed %s, want %s", got, digestB)
		}
		w := []string{digestA + " " + itoa(int64(sizeA)) + " linux/s390x", digestB + " " + itoa(int64(sizeB)) + " linux/" + host}
		for _, tool := range []string{"buildah", "podman"} {
			idx := parseIndex(t, tool, mustRun(t, tool, storeFlags("manifest", "inspect", bl)...))
			if got := idx.entries(); !slices.Equal(got, w) {
				t.Errorf("%s after builder's add: %q, want %q", tool, got, w)
			}
		}
		// buildah's rm takes builder's list apart too... and builder's rm, buildah's.
		out := must(t, "", nil, nil, "manifest", "rm", bl)
		if w := "untagged: " + bl + "\n" + blID + "\n"; out != w {
			t.Errorf("manifest rm printed %q, want %q", out, w)
		}
		if _, err := runTool("podman", storeFlags("manifest", "inspect", bl)...); err == nil {
			t.Error("podman still finds the removed list")
		}
	})

	t.Run("push-registry", func(t *testing.T) {
		reg := startRegistry(t)
		dest := reg.host + "/mf/list:v1"
		df := filepath.Join(t.TempDir(), "digest")
		must(t, "", nil, nil, append([]string{"manifest", "push", "-q", "--digestfile", df}, append(reg.flags(), list, "docker://"+dest)...)...)
		skopeo := func(ref string) string {
			return mustRun(t, "skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", reg.user+":"+reg.pass, "docker://"+ref)
		}
		raw := skopeo(dest)
		if d := digest.FromString(raw).String(); d != readFile(t, df) {
			t.Errorf("registry's list has digest %s, --digestfile says %s", d, readFile(t, df))
		}
		for _, name := range []string{"docker://" + dest, dest} { // a registry name that is no local list reads the registry's
			out := must(t, "", nil, nil, append([]string{"manifest", "inspect"}, append(reg.flags(), name)...)...)
			var compact bytes.Buffer
			if err := json.Compact(&compact, []byte(out)); err != nil || compact.String() != raw {
				t.Errorf("builder manifest inspect %s:\n%s\nskopeo inspect --raw:\n%s", name, out, raw)
			}
		}
		pushed := parseIndex(t, "skopeo inspect --raw", raw)
		if got, w := pushed.platforms(), ours.platforms(); !slices.Equal(got, w) {
			t.Errorf("pushed list platforms %q, local list's %q", got, w)
		}
		if len(pushed.Manifests) == 2 && pushed.Manifests[1].Annotations["org.example.k"] != "v" {
			t.Errorf("pushed annotations %v", pushed.Manifests[1].Annotations)
		}
		// Each entry is the local image (same config), compressed for the registry.
		for i, m := range pushed.Manifests {
			var man struct {
				Config struct{ Digest string } `json:"config"`
				Layers []struct{ MediaType string }
			}
			json.Unmarshal([]byte(skopeo(reg.host+"/mf/list@"+m.Digest)), &man)
			if w := "sha256:" + []string{idA, idB}[i]; man.Config.Digest != w {
				t.Errorf("pushed entry %d has config %s, want the local image's %s", i, man.Config.Digest, w)
			}
			if len(man.Layers) != 1 || !strings.HasSuffix(man.Layers[0].MediaType, "+gzip") {
				t.Errorf("pushed entry %d layers %+v, want one gzip layer", i, man.Layers)
			}
		}
		// --format docker: a Docker list over Docker manifests.
		must(t, "", nil, nil, append([]string{"manifest", "push", "-q", "--format", "docker"}, append(reg.flags(), list, "docker://"+reg.host+"/mf/docker:v1")...)...)
		dl := parseIndex(t, "skopeo", skopeo(reg.host+"/mf/docker:v1"))
		if dl.MediaType != "application/vnd.docker.distribution.manifest.list.v2+json" || len(dl.Manifests) != 2 ||
			dl.Manifests[0].MediaType != "application/vnd.docker.distribution.manifest.v2+json" {
			t.Errorf("--format docker pushed %+v", dl)
		}
		// --all=false: the list alone, as stored; the registry refuses it,
		// for its images (the local, uncompressed manifests) are not there.
		expectFail(t, 0, []string{"blob unknown"}, append([]string{"manifest", "push", "-q", "--all=false"}, append(reg.flags(), list, "docker://"+reg.host+"/mf/alone:v1")...)...)

		// A list of the registry's images: added by digest, nothing pulled.
		const rl = "localhost/mf-remote:latest"
		rlID := strings.TrimSpace(must(t, "", nil, nil, "manifest", "create", rl))
		// Without --all, a list adds its image for this machine.
		if got := addedDigest(t, must(t, "", nil, nil, append([]string{"manifest", "add"}, append(reg.flags(), rl, "docker://"+dest)...)...), rlID); got != pushed.Manifests[0].Digest {
			t.Errorf("add of the registry's list added %s, want its %s image %s", got, host, pushed.Manifests[0].Digest)
		}
		must(t, "", nil, nil, append([]string{"manifest", "add", "--all"}, append(reg.flags(), rl, "docker://"+dest)...)...)
		remote := parseIndex(t, "inspect", must(t, "", nil, nil, "manifest", "inspect", rl))
		if got, w := remote.entries(), pushed.entries(); !slices.Equal(got, w) {
			t.Errorf("list of the registry's images: %q, want %q", got, w)
		}
		// --all=false now works: the images are in the repository.
		must(t, "", nil, nil, append([]string{"manifest", "push", "-q", "--all=false"}, append(reg.flags(), rl, "docker://"+reg.host+"/mf/list:alone")...)...)
		var compact bytes.Buffer
		json.Compact(&compact, []byte(must(t, "", nil, nil, "manifest", "inspect", rl)))
		if got := skopeo(reg.host + "/mf/list:alone"); got != compact.String() {
			t.Errorf("--all=false pushed\n%s\nwant the local list\n%s", got, compact.String())
		}
		// --all copies the images from where the list says they are.
		must(t, "", nil, nil, append([]string{"manifest", "push", "-q", "--rm"}, append(reg.flags(), rl, "docker://"+reg.host+"/mf/copy:v1")...)...)
		copied := parseIndex(t, "skopeo", skopeo(reg.host+"/mf/copy:v1"))
		if got, w := copied.platforms(), pushed.platforms(); !slices.Equal(got, w) {
			t.Errorf("copied list platforms %q, want %q", got, w)
		}
		for i, m := range copied.Manifests {
			var man struct {
				Config struct{ Digest string } `json:"config"`
			}
			json.Unmarshal([]byte(skopeo(reg.host+"/mf/copy@"+m.Digest)), &man)
			if w := "sha256:" + []string{idA, idB}[i]; man.Config.Digest != w {
				t.Errorf("copied entry %d has config %s, want %s", i, man.Config.Digest, w)
			}
		}
		expectFail(t, 0, []string{"no manifest list named " + rl}, "manifest", "inspect", rl)
	})

	t.Run("push-oci-layout", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "layout")
		must(t, "", nil, nil, "manifest", "push", "-q", list, "oci:"+dir+":v1")
		var top manifestIndex
		readJSON(t, filepath.Join(dir, "index.json"), &top)
		if len(top.Manifests) != 1 || top.Manifests[0].MediaType != "application/vnd.oci.image.index.v1+json" ||
			top.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "v1" {
			t.Fatalf("index.json: %+v", top)
		}
		blob := func(d string) string {
			b, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(d, "sha256:")))
			if err != nil {
				t.Fatalf("blob %s: %v", d, err)
			}
			if digest.FromBytes(b).String() != d {
				t.Fatalf("blob %s has digest %s", d, digest.FromBytes(b))
			}
			return string(b)
		}
		idx := parseIndex(t, "the layout's index", blob(top.Manifests[0].Digest))
		if got, w := idx.platforms(), ours.platforms(); !slices.Equal(got, w) {
			t.Errorf("layout's index platforms %q, local list's %q", got, w)
		}
		for i, m := range idx.Manifests {
			var man struct {
				Config struct{ Digest string } `json:"config"`
				Layers []struct{ Digest string }
			}
			json.Unmarshal([]byte(blob(m.Digest)), &man)
			if w := "sha256:" + []string{idA, idB}[i]; man.Config.Digest != w {
				t.Errorf("layout entry %d has config %s, want the local image's %s", i, man.Config.Digest, w)
			}
			for _, l := range man.Layers {
				blob(l.Digest)
			}
		}

		// --all=false writes the list as stored, naming the local manifests.
		alone := filepath.Join(t.TempDir(), "alone")
		must(t, "", nil, nil, "manifest", "push", "-q", "--all=false", list, "oci:"+alone+":v1")
		readJSON(t, filepath.Join(alone, "index.json"), &top)
		local := must(t, "", nil, nil, "manifest", "inspect", list)
		var compact bytes.Buffer
		json.Compact(&compact, []byte(local))
		if len(top.Manifests) != 1 || top.Manifests[0].Digest != digest.FromBytes(compact.Bytes()).String() {
			t.Errorf("--all=false wrote %+v, want the local list %s", top.Manifests, digest.FromBytes(compact.Bytes()))
		}
	})

	t.Run("push-rm", func(t *testing.T) {
		const tmp = "localhost/mf-tmp:latest"
		tmpID := strings.TrimSpace(must(t, "", nil, nil, "manifest", "create", tmp, "localhost/mf-a"))
		dir := filepath.Join(t.TempDir(), "layout")
		must(t, "", nil, nil, "manifest", "push", "-q", "--rm", tmp, "oci:"+dir)
		expectFail(t, 0, []string{"no manifest list named " + tmp}, "manifest", "inspect", tmp)
		if _, _, code := runAt("", nil, nil, "inspect", tmpID); code == 0 {
			t.Error("the list's image survived push --rm")
		}
		localImage(t, "localhost/mf-a") // its instance did
	})

	t.Run("remove", func(t *testing.T) {
		out := must(t, "", nil, nil, "manifest", "remove", list, digestB)
		if got := addedDigest(t, out, listID); got != digestB {
			t.Errorf("remove printed %q", out)
		}
		idx := parseIndex(t, "inspect", must(t, "", nil, nil, "manifest", "inspect", list))
		if got := idx.entries(); !slices.Equal(got, want[:1]) {
			t.Errorf("after remove: %q, want %q", got, want[:1])
		}
		podman := parseIndex(t, "podman", mustRun(t, "podman", storeFlags("manifest", "inspect", list)...))
		if got := podman.entries(); !slices.Equal(got, want[:1]) {
			t.Errorf("podman after remove: %q, want %q", got, want[:1])
		}
		expectFail(t, 0, []string{"has no instance " + digestB}, "manifest", "remove", list, digestB)
		expectFail(t, 2, []string{`instance digest "sha256:1234"`, "invalid"}, "manifest", "remove", list, "sha256:1234")
		expectFail(t, 2, []string{`"notadigest"`}, "manifest", "remove", list, "notadigest")
	})

	t.Run("bad-input", func(t *testing.T) {
		expectFail(t, 0, []string{"no manifest list named localhost/mf-nothere"}, "manifest", "inspect", "localhost/mf-nothere")
		expectFail(t, 0, []string{"no manifest list named mf-nothere"}, "manifest", "add", "mf-nothere", "localhost/mf-a")
		expectFail(t, 0, []string{"no manifest list named mf-nothere"}, "manifest", "remove", "mf-nothere", digestA)
		expectFail(t, 0, []string{"no manifest list named mf-nothere"}, "manifest", "push", "mf-nothere", "oci:"+t.TempDir())
		expectFail(t, 0, []string{"not a manifest list"}, "manifest", "inspect", "localhost/mf-a")
		expectFail(t, 0, []string{"not a manifest list"}, "manifest", "add", "localhost/mf-a", "localhost/mf-b")
		expectFail(t, 0, []string{"not a manifest list"}, "manifest", "create", "--amend", "localhost/mf-a")
		expectFail(t, 0, []string{"is in use"}, "manifest", "create", "localhost/mf-a")
		expectFail(t, 2, []string{"want KEY=VALUE"}, "manifest", "add", "--annotation", "novalue", list, "localhost/mf-b")
		expectFail(t, 2, []string{"unknown list format"}, "manifest", "create", "--format", "zip", "localhost/mf-x")
		expectFail(t, 2, []string{"accepts 2 arg"}, "manifest", "add", list)
		expectFail(t, 2, []string{"unknown manifest command"}, "manifest", "bogus")
		localImage(t, "localhost/mf-a") // untouched by all that
	})

	t.Run("docker-list", func(t *testing.T) {
		const dl = "localhost/mf-docker:latest"
		id := strings.TrimSpace(must(t, "", nil, nil, "manifest", "create", "--format", "docker", dl, "localhost/mf-a"))
		addedDigest(t, must(t, "", nil, nil, "manifest", "add", "--arch", "arm", "--variant", "v7", "--features", "f1,f2", dl, "localhost/mf-b"), id)
		for _, tool := range []string{"builder", "buildah"} {
			var out string
			if tool == "builder" {
				out = must(t, "", nil, nil, "manifest", "inspect", dl)
			} else {
				out = mustRun(t, tool, storeFlags("manifest", "inspect", dl)...)
			}
			idx := parseIndex(t, tool, out)
			if idx.MediaType != "application/vnd.docker.distribution.manifest.list.v2+json" ||
				!slices.Equal(idx.platforms(), []string{"linux/" + host, "linux/arm/v7"}) ||
				len(idx.Manifests) != 2 || !slices.Equal(idx.Manifests[1].Platform.Features, []string{"f1", "f2"}) {
				t.Errorf("%s: Docker list %s", tool, out)
			}
		}
		expectFail(t, 2, []string{"Docker manifest list", "annotations"}, "manifest", "add", "--annotation", "a=b", dl, "localhost/mf-b")
		must(t, "", nil, nil, "manifest", "rm", dl)
	})

	t.Run("rm", func(t *testing.T) {
		expectFail(t, 0, []string{"not a manifest list"}, "manifest", "rm", "localhost/mf-a")
		localImage(t, "localhost/mf-a") // survives
		// A second name of the list is only untagged.
		must(t, "", nil, nil, "tag", list, "localhost/mf-list:other")
		if out := must(t, "", nil, nil, "manifest", "rm", "localhost/mf-list:other"); out != "untagged: localhost/mf-list:other\n" {
			t.Errorf("rm of a second name printed %q", out)
		}
		// Several at once: the good ones go, the bad one is an error.
		so, se, code := runAt("", nil, nil, "manifest", "rm", list, "localhost/mf-nothere")
		if code == 0 || so != "untagged: "+list+"\n"+listID+"\n" || !strings.Contains(se, "no manifest list named localhost/mf-nothere") {
			t.Errorf("manifest rm: exit %d, stdout %q, stderr %q", code, so, se)
		}
		expectFail(t, 0, []string{"no manifest list named " + list}, "manifest", "inspect", list)
		if _, err := runTool("buildah", storeFlags("manifest", "inspect", list)...); err == nil {
			t.Error("buildah still finds the removed list")
		}
		localImage(t, "localhost/mf-a") // the instances stay
		localImage(t, "localhost/mf-b")
	})
}

// runTool runs a program and returns its combined output.
func runTool(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
