package tests

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A rootless build into an overlay store writes each new layer once: the
// layer tree the build wrote is moved into containers/storage, and the
// build's layer store keeps a link to it. The store gives the exact layer
// back (push verifies diff IDs), podman's driver reads it, and when the
// image is removed the next build extracts or rebuilds what it needs.
func TestOneCopyPerLayer(t *testing.T) {
	u := ensureUser(t, "buildertest")
	dir := filepath.Join(env.tmp, "onecopy")
	os.RemoveAll(dir)
	base := filepath.Join(dir, "base")
	mustRun(t, filepath.Join(env.repo, "hack", "mkbase-context.sh"), base)
	ctx := filepath.Join(dir, "ctx")
	os.MkdirAll(filepath.Join(ctx, "files"), 0o755)
	for i := range 30 {
		os.WriteFile(filepath.Join(ctx, "files", "f"+string(rune('a'+i%26))+strings.Repeat("x", i/26)), []byte(strings.Repeat("data", i+1)), 0o644)
	}
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(`FROM localhost/busybox:latest
COPY files/ /files/
RUN mkdir /made && echo once > /made/unique-marker && rm -rf /files/fb /bin/wget
`), 0o644)
	mustRun(t, "chown", "-R", "buildertest:", dir)
	root, run := filepath.Join(dir, "root"), filepath.Join(dir, "run")
	b := func(args ...string) string {
		return u.run(t, append([]string{env.bin, "--root", root, "--runroot", run, "--storage-driver", "overlay"}, args...)...)
	}
	b("bud", "-q", "-t", "localhost/busybox:latest", base)
	b("bud", "-q", "-t", "localhost/onecopy:v1", ctx)
	copies := func() int {
		out := u.run(t, "find", root, "-name", "unique-marker")
		return len(strings.Fields(out))
	}
	if n := copies(); n != 1 {
		t.Errorf("the RUN layer's file is in the store %d times, want once", n)
	}
	links, _ := filepath.Glob(filepath.Join(root, "builder", "snapshots", "layers", "*"))
	moved := 0
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil {
			if !strings.HasPrefix(target, filepath.Join(root, "overlay")+"/") {
				t.Errorf("layer link %s -> %s, outside the store's overlay directory", l, target)
			}
			moved++
		}
	}
	if moved < 2 {
		t.Errorf("%d layer trees moved into the store, want the COPY's and the RUN's", moved)
	}
	// The exact layers come back from the store (push checks diff IDs).
	out := filepath.Join(dir, "oci")
	b("push", "-q", "localhost/onecopy:v1", "oci:"+out+":v1")
	files := map[string]string{}
	l := readLayout(t, out)
	for i := range l.manifest.Layers {
		for n, c := range l.files(t, i) {
			files[strings.TrimPrefix(n, "./")] = c
		}
	}
	if files["made/unique-marker"] != "once\n" || files["files/fa"] != "data" {
		t.Errorf("pushed image lacks the build's files: %q %q", files["made/unique-marker"], files["files/fa"])
	}
	// podman reads the moved layers, whiteouts included.
	pod := u.run(t, "podman", "--runtime", "runc", "--root", root, "--runroot", run, "--storage-driver", "overlay",
		"--tmpdir", filepath.Join(dir, "podman-tmp"), "--events-backend", "none", // nothing of the user's own podman touched
		"run", "--rm", "--network=none", "localhost/onecopy:v1", "sh", "-c", "cat /made/unique-marker; ls /files | wc -l; test -e /bin/wget || echo no-wget")
	if !strings.Contains(pod, "once") || !strings.Contains(pod, "29") || !strings.Contains(pod, "no-wget") {
		t.Errorf("podman run of the image:\n%s", pod)
	}
	// Removed with its image: the next build does not trip on the links.
	b("rmi", "localhost/onecopy:v1")
	b("bud", "-q", "-t", "localhost/onecopy:v2", ctx)
	if n := copies(); n != 1 {
		t.Errorf("after rmi and a rebuild the file is in the store %d times, want once", n)
	}
}

// A COPY that misses the cache because one file changed links the other
// files from the earlier build's layer (same inodes) and still makes the
// layer a fresh build makes, byte for byte.
func TestCopyReusesUnchangedFiles(t *testing.T) {
	dir := filepath.Join(env.tmp, "reuse")
	os.RemoveAll(dir)
	ctx := filepath.Join(dir, "ctx")
	for d := range 3 {
		for f := range 20 {
			p := filepath.Join(ctx, "tree", "d"+string(rune('0'+d)), "f"+string(rune('a'+f)))
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, []byte(strings.Repeat(p, 10)), 0o644)
		}
	}
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM "+env.baseOCI+"\nCOPY tree/ /srv/tree/\n"), 0o644)
	globals := []string{"--root", dir + "/root", "--runroot", dir + "/run", "--storage-driver", "overlay"}
	build := func(args ...string) {
		t.Helper()
		if so, se, code := builderWith(globals, nil, append([]string{"bud", "-q", "--timestamp", "1700000000"}, append(args, ctx)...)...); code != 0 {
			t.Fatalf("bud %v: exit %d\n%s%s", args, code, so, se)
		}
	}
	diffIDs := func(tag string) string {
		t.Helper()
		out := filepath.Join(dir, "oci-"+strings.NewReplacer(":", "-", "/", "-").Replace(tag))
		os.RemoveAll(out)
		if _, se, code := builderWith(globals, nil, "push", "-q", tag, "oci:"+out+":x"); code != 0 {
			t.Fatalf("push %s: %s", tag, se)
		}
		return strings.Join(diffIDs(readLayout(t, out)), " ")
	}
	build("-t", "localhost/reuse:v1")
	os.WriteFile(filepath.Join(ctx, "tree", "d1", "fc"), []byte("edited"), 0o644)
	os.Chmod(filepath.Join(ctx, "tree", "d2", "fa"), 0o600)
	build("-t", "localhost/reuse:v2")
	build("--no-cache", "-t", "localhost/reuse:fresh") // never links
	if got, want := diffIDs("localhost/reuse:v2"), diffIDs("localhost/reuse:fresh"); got != want {
		t.Errorf("the rebuilt layer differs from a fresh build's:\n%s\n%s", got, want)
	}
	// In the store: unchanged files are shared by v1's and v2's layers,
	// the edited and the re-moded one are not.
	links := func(rel string) []uint64 {
		var out []uint64
		ms, _ := filepath.Glob(filepath.Join(dir, "root", "overlay", "*", "diff", "srv", "tree", rel))
		for _, m := range ms {
			if fi, err := os.Stat(m); err == nil {
				out = append(out, fi.Sys().(*syscall.Stat_t).Nlink)
			}
		}
		return out
	}
	if got := links("d0/fa"); len(got) < 2 || got[0] < 2 {
		t.Errorf("an unchanged file is not shared between the layers: nlink %v", got)
	}
	for _, rel := range []string{"d1/fc", "d2/fa"} {
		for _, n := range links(rel) {
			if n != 1 {
				t.Errorf("%s (changed) shares its inode: nlink %v", rel, links(rel))
			}
		}
	}
}

// In a build that ends in an overlay store, stage layers are kept as their
// trees and tar-splits, never as blobs: cache hits read them there, an
// image that takes them (FROM stage) moves them into the store, and a
// tree that went with a removed image makes its entry a miss.
func TestStageLayersKeptAsTrees(t *testing.T) {
	dir := filepath.Join(env.tmp, "stagetrees")
	os.RemoveAll(dir)
	ctx := contextDir(t, "FROM "+env.baseOCI+` AS build
COPY a.txt /src/a.txt
RUN cat /src/a.txt /src/a.txt > /out
FROM `+env.baseOCI+` AS side
RUN echo side > /side && echo more > /side2
FROM build AS mid
RUN echo mid > /mid
FROM mid
COPY --from=side /side /side
RUN cat /out /mid /side > /final
`, map[string]string{"a.txt": "A\n"})
	globals := []string{"--root", dir + "/root", "--runroot", dir + "/run", "--storage-driver", "overlay"}
	bud := func(tag string) string {
		t.Helper()
		so, se, code := builderWith(globals, nil, "bud", "--timestamp", "1700000000", "-t", tag, ctx)
		if code != 0 {
			t.Fatalf("bud: exit %d\n%s%s", code, so, se)
		}
		return so + se
	}
	bud("localhost/stagetrees:v1")
	if n := blobFiles(t, dir+"/root"); n > 1 { // the base's compressed blob, kept by the pull
		t.Errorf("%d blobs in the blob store after a store-only build; stage layers must not be blobs", n)
	}
	splits, _ := os.ReadDir(filepath.Join(dir, "root", "builder", "snapshots", "splits"))
	if len(splits) < 3 {
		t.Errorf("%d kept tar-splits, want one per stage layer (3)", len(splits))
	}
	if out := bud("localhost/stagetrees:v2"); strings.Count(out, "--> Using cache") != 6 {
		t.Errorf("second build: want 6 cache hits:\n%s", out)
	}
	oci := filepath.Join(dir, "oci")
	if _, se, code := builderWith(globals, nil, "push", "-q", "localhost/stagetrees:v2", "oci:"+oci+":x"); code != 0 {
		t.Fatalf("push: %s", se)
	}
	l := readLayout(t, oci)
	files := map[string]string{}
	for i := range l.manifest.Layers {
		for n, c := range l.files(t, i) {
			files[strings.TrimPrefix(n, "./")] = c
		}
	}
	if files["final"] != "A\nA\nmid\nside\n" {
		t.Errorf("/final = %q", files["final"])
	}
	// The image took the trees of build's and mid's layers; removing it
	// takes them: their entries miss, side's still hits.
	for _, tag := range []string{"localhost/stagetrees:v1", "localhost/stagetrees:v2"} {
		if _, se, code := builderWith(globals, nil, "rmi", tag); code != 0 {
			t.Fatalf("rmi %s: %s", tag, se)
		}
	}
	out := bud("localhost/stagetrees:v3")
	if strings.Count(out, "--> Using cache") != 1 || !strings.Contains(out, "[2/4] --> Using cache") {
		t.Errorf("third build:\n%s", out)
	}
}

// A base layer the build extracts (here from an OCI layout) keeps the
// tar-split made while it was extracted, with the tar's length and owners:
// the store commit moves its tree in with that tar-split instead of
// decompressing and parsing the layer again, and the store still gives the
// layer's exact bytes back.
func TestBaseLayerKeepsItsSplit(t *testing.T) {
	dir := filepath.Join(env.tmp, "basesplit")
	os.RemoveAll(dir)
	ctx := filepath.Join(dir, "ctx")
	os.MkdirAll(ctx, 0o755)
	os.WriteFile(filepath.Join(ctx, "f"), []byte("file"), 0o644)
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM "+env.baseOCI+"\nCOPY f /srv/f\n"), 0o644)
	root := filepath.Join(dir, "root")
	globals := []string{"--root", root, "--runroot", dir + "/run", "--storage-driver", "overlay"}
	if so, se, code := builderWith(globals, nil, "bud", "-q", "-t", "localhost/basesplit:v1", ctx); code != 0 {
		t.Fatalf("bud: exit %d\n%s%s", code, so, se)
	}
	base := diffIDs(readLayout(t, strings.TrimSuffix(strings.TrimPrefix(env.baseOCI, "oci:"), ":latest")))
	snaps := filepath.Join(root, "builder", "snapshots")
	for _, d := range base {
		hex := strings.TrimPrefix(d, "sha256:")
		meta, err := os.ReadFile(filepath.Join(snaps, "splits", hex+".meta"))
		if err != nil || !strings.Contains(string(meta), `"size":`) {
			t.Errorf("base layer %s: no kept tar-split meta (%v): %s", d, err, meta)
		}
		if _, err := os.Stat(filepath.Join(snaps, "splits", hex)); err != nil {
			t.Errorf("base layer %s: no kept tar-split: %v", d, err)
		}
		if target, err := os.Readlink(filepath.Join(snaps, "layers", hex)); err != nil || !strings.HasPrefix(target, filepath.Join(root, "overlay")+"/") {
			t.Errorf("base layer %s: tree not moved into the store (%q, %v)", d, target, err)
		}
	}
	out := filepath.Join(dir, "oci")
	if _, se, code := builderWith(globals, nil, "push", "-q", "localhost/basesplit:v1", "oci:"+out+":v1"); code != 0 {
		t.Fatalf("push: %s", se)
	}
	l := readLayout(t, out)
	got := diffIDs(l)
	if len(got) != len(base)+1 || strings.Join(got[:len(base)], " ") != strings.Join(base, " ") {
		t.Fatalf("pushed diff IDs %v, want the base's %v and one more", got, base)
	}
	for i := range l.manifest.Layers {
		l.layerEntries(t, i) // checks each layer's tar against its diff ID
	}
}
