package tests

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cacheBuild builds ctx in root (a store of its own) and returns the image
// ID and the combined output.
func cacheBuild(t *testing.T, root, ctx string, extra ...string) (string, string) {
	t.Helper()
	iid := filepath.Join(t.TempDir(), "iid")
	args := append([]string{"bud", "--timestamp", "1700000000", "--iidfile", iid}, extra...)
	so, se, code := runAt(root, nil, nil, append(args, ctx)...)
	if code != 0 {
		t.Fatalf("bud %v: exit %d\n%s%s", extra, code, so, se)
	}
	return readFile(t, iid), so + se
}

// ran lists the RUN markers in out: RUN steps that executed print one.
func ran(out string) []string {
	var got []string
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, "RAN-"); i >= 0 && !strings.Contains(l, "STEP") {
			got = append(got, strings.TrimSpace(l[i:]))
		}
	}
	return got
}

func TestCacheInvalidation(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	other := filepath.Join(t.TempDir(), "base2")
	// A second base: same content, another manifest digest.
	must(t, root, nil, nil, "bud", "--timestamp", "1700000001", "-t", "base2:latest", "-o", "type=oci,dest="+other,
		contextDir(t, "FROM "+env.baseOCI+"\nLABEL base=2\n", nil))
	ctx := contextDir(t, `ARG BASE=`+env.baseOCI+`
FROM ${BASE}
COPY a.txt /a.txt
RUN --mount=type=cache,id=runs,target=/runs echo RAN-1 | tee -a /runs/log && cp /a.txt /a.copy
COPY b.txt /b.txt
ARG V=1
RUN echo RAN-2-$V && cat /b.txt > /b.copy
WORKDIR /w
RUN echo RAN-3 && echo x > /w/f
`, map[string]string{"a.txt": "a\n", "b.txt": "b\n", "skip.log": "x\n", ".dockerignore": "*.log\n"})
	all := []string{"RAN-1", "RAN-2-1", "RAN-3"}
	id1, out := cacheBuild(t, root, ctx)
	ran1 := 1
	if got := ran(out); strings.Join(got, ",") != strings.Join(all, ",") {
		t.Fatalf("first build ran %v, want %v\n%s", got, all, out)
	}
	step := func(name string, want []string, change func(), extra ...string) string {
		t.Helper()
		if change != nil {
			change()
		}
		id, out := cacheBuild(t, root, ctx, extra...)
		ran1 += strings.Count(strings.Join(ran(out), ","), "RAN-1")
		if got := ran(out); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: ran %v, want %v\n%s", name, got, want, out)
		}
		return id
	}
	if id := step("unchanged", nil, nil); id != id1 {
		t.Errorf("unchanged rebuild: image %s, want %s", id, id1)
	}
	if !strings.Contains(out, "Cache: 0 hit(s), 6 miss(es)") {
		t.Errorf("no summary line in\n%s", out)
	}
	later := time.Now().Add(time.Hour)
	if id := step("touched", nil, func() { os.Chtimes(filepath.Join(ctx, "a.txt"), later, later) }); id != id1 {
		t.Errorf("rebuild after touch: image %s, want %s", id, id1)
	}
	step("ignored file changed", nil, func() { os.WriteFile(filepath.Join(ctx, "skip.log"), []byte("y\n"), 0o644) })
	step("build arg", []string{"RAN-2-2", "RAN-3"}, nil, "--build-arg", "V=2")
	editB := func() { os.WriteFile(filepath.Join(ctx, "b.txt"), []byte("B\n"), 0o644) }
	idB := step("b.txt changed", []string{"RAN-2-1", "RAN-3"}, editB)
	_, out = cacheBuild(t, root, ctx, "--explain-cache", "--build-arg", "V=3")
	if !strings.Contains(out, "--> Cache miss: env V changed") {
		t.Errorf("--explain-cache after a build arg change:\n%s", out)
	}
	os.WriteFile(filepath.Join(ctx, "b.txt"), []byte("BB\n"), 0o644)
	_, out = cacheBuild(t, root, ctx, "--explain-cache")
	if !strings.Contains(out, "--> Cache miss: file b.txt changed") {
		t.Errorf("--explain-cache after an edit does not name b.txt:\n%s", out)
	}
	editB()
	step("b.txt restored", nil, nil) // all cached again
	step("base digest", []string{"RAN-1", "RAN-2-1", "RAN-3"}, nil, "--build-arg", "BASE=oci:"+other+":latest")
	// The same reference moved to another image: everything runs, and
	// --explain-cache says so.
	must(t, root, nil, nil, "bud", "--timestamp", "1700000002", "-t", "base2:latest", "-o", "type=oci,dest="+other,
		contextDir(t, "FROM "+env.baseOCI+"\nLABEL base=3\n", nil))
	_, out = cacheBuild(t, root, ctx, "--explain-cache", "--build-arg", "BASE=oci:"+other+":latest")
	if got := ran(out); len(got) != 3 || !strings.Contains(out, "--> Cache miss: the base image oci:"+other+":latest is now sha256:") {
		t.Errorf("after the base reference moved: ran %v, explanation:\n%s", got, out)
	}
	ran1++
	// A hit gives the layer a fresh build would: --no-cache, same image.
	if id := step("no-cache", []string{"RAN-1", "RAN-2-1", "RAN-3"}, nil, "--no-cache"); id != idB {
		t.Errorf("--no-cache gave image %s, the cached build %s", id, idB)
	}
	step("layers=false", []string{"RAN-1", "RAN-2-1", "RAN-3"}, nil, "--layers=false")
	ls := must(t, root, nil, nil, "cache", "ls")
	if !strings.Contains(ls, "COPY b.txt /b.txt") {
		t.Errorf("cache ls:\n%s", ls)
	}
	snaps := filepath.Join(root, "builder", "snapshots")
	if n := countTrees(snaps); n == 0 {
		t.Fatalf("no extracted layers or chains under %s before prune", snaps)
	}
	if out := must(t, root, nil, nil, "prune", "--all"); !strings.Contains(out, "extracted layers") {
		t.Errorf("prune output: %s", out)
	}
	if ls := must(t, root, nil, nil, "cache", "ls"); strings.Count(ls, "\n") != 1 {
		t.Errorf("cache ls after prune --all:\n%s", ls)
	}
	if n := countTrees(snaps); n != 0 {
		t.Errorf("%d extracted layers or chains left after prune --all", n)
	}
	step("after prune", []string{"RAN-1", "RAN-2-1", "RAN-3"}, nil)
	// The host directory behind the cache mount saw the first RUN exactly as
	// often as the output said it ran.
	sum := sha256.Sum256([]byte("runs"))
	log := readFile(t, filepath.Join(root, "builder", "cache-mounts", hex.EncodeToString(sum[:])[:24], "log"))
	if n := strings.Count(log, "RAN-1"); n != ran1 {
		t.Errorf("the host-side log holds %d runs of the first RUN, the output showed %d", n, ran1)
	}
}

// Two builds of one Dockerfile at once in one store both succeed with the
// same image; a build killed while writing a layer leaves a cache the next
// builds use.
func TestCacheConcurrentAndKilled(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	big := strings.Repeat("0123456789abcdef", 4<<20) // 64 MiB
	ctx := contextDir(t, "FROM "+env.baseOCI+"\nCOPY big /big\nRUN echo RAN-1 && wc -c /big > /size\n", map[string]string{"big": big})
	var wg sync.WaitGroup
	ids := make([]string, 2)
	for i := range ids {
		wg.Go(func() { ids[i], _ = cacheBuild(t, root, ctx) })
	}
	wg.Wait()
	if ids[0] != ids[1] || ids[0] == "" {
		t.Errorf("concurrent builds gave %q and %q", ids[0], ids[1])
	}

	root2 := filepath.Join(t.TempDir(), "root")
	cmd := exec.Command(env.bin, "--root", root2, "--runroot", root2+"-run", "--storage-driver", "vfs", "bud", "--timestamp", "1700000000", ctx)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it while it writes the COPY layer: once a layer file (a blob
	// being ingested, or the scratch tar of a build that ends in the store)
	// exists.
	writing := func() bool {
		a, _ := filepath.Glob(filepath.Join(root2, "builder", "blobs", "tmp", "ingest-*"))
		b, _ := filepath.Glob(filepath.Join(root2, "builder", "tmp", "build-*", "layer-*.tar"))
		return len(a)+len(b) > 0
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && !writing() {
		time.Sleep(time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if !writing() {
		t.Fatal("the build was not killed during a layer write")
	}
	id, out := cacheBuild(t, root2, ctx)
	if id != ids[0] {
		t.Errorf("build after a kill: image %s, want %s\n%s", id, ids[0], out)
	}
	if _, out := cacheBuild(t, root2, ctx); len(ran(out)) != 0 || strings.Count(out, "--> Using cache") != 2 {
		t.Errorf("rebuild after the kill did not hit every step:\n%s", out)
	}
	if left, _ := filepath.Glob(filepath.Join(root2, "builder", "tmp", "build-*")); len(left) != 0 {
		t.Errorf("the killed build's scratch directory is still there: %v", left)
	}
}

// --portable-modes: checkouts made with umask 0002 and 0022 share keys and
// give one image; without it they differ.
func TestCachePortableModes(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	df := "FROM " + env.baseOCI + "\nCOPY src/ /src/\n"
	mk := func(fileMode, exeMode, dirMode os.FileMode) string {
		ctx := contextDir(t, df, nil)
		os.Mkdir(filepath.Join(ctx, "src"), 0o700)
		os.WriteFile(filepath.Join(ctx, "src", "f"), []byte("f\n"), 0o600)
		os.WriteFile(filepath.Join(ctx, "src", "x"), []byte("#!/bin/sh\n"), 0o700)
		os.Chmod(filepath.Join(ctx, "src", "f"), fileMode)
		os.Chmod(filepath.Join(ctx, "src", "x"), exeMode)
		os.Chmod(filepath.Join(ctx, "src"), dirMode)
		return ctx
	}
	a, b := mk(0o664, 0o775, 0o775), mk(0o644, 0o755, 0o755)
	idA, _ := cacheBuild(t, root, a, "--portable-modes")
	idB, out := cacheBuild(t, root, b, "--portable-modes")
	if idA != idB || !strings.Contains(out, "--> Using cache") {
		t.Errorf("--portable-modes: images %s and %s (second build cached: %v)", idA, idB, strings.Contains(out, "Using cache"))
	}
	cacheBuild(t, root, a)
	_, out = cacheBuild(t, root, b)
	if strings.Contains(out, "--> Using cache") {
		t.Errorf("without --portable-modes, umask 0002 and 0022 checkouts shared a key:\n%s", out)
	}
}

// A step that runs again because an input changed, but makes the same
// layer, does not invalidate the steps after it: they hit by content.
func TestCacheSameContent(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	ctx := contextDir(t, "FROM "+env.baseOCI+`
RUN --mount=type=bind,source=in.txt,target=/in cat /in >/dev/null && echo RAN-1 && echo same > /f
RUN echo RAN-2 && cp /f /g
`, map[string]string{"in.txt": "one\n"})
	if _, out := cacheBuild(t, root, ctx); len(ran(out)) != 2 {
		t.Fatalf("first build ran %v\n%s", ran(out), out)
	}
	os.WriteFile(filepath.Join(ctx, "in.txt"), []byte("two\n"), 0o644)
	_, out := cacheBuild(t, root, ctx)
	if got := ran(out); strings.Join(got, ",") != "RAN-1" || !strings.Contains(out, "(same content)") {
		t.Errorf("after an input change with the same output: ran %v, want only RAN-1 and a content hit\n%s", got, out)
	}
}

// Without --timestamp, a rebuild that hits every step gives the same image
// ID as the build it hit (as buildah --layers and docker do); one that
// ran a step gives a new one.
func TestCacheSameImageID(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	ctx := contextDir(t, "FROM "+env.baseOCI+"\nENV A=1\nRUN echo RAN-1 > /f\nLABEL l=1\n", nil)
	build := func(extra ...string) string {
		so, se, code := runAt(root, nil, nil, append(append([]string{"bud", "-q"}, extra...), ctx)...)
		if code != 0 {
			t.Fatalf("bud: %s%s", so, se)
		}
		return strings.TrimSpace(so)
	}
	first := build()
	time.Sleep(1100 * time.Millisecond) // another second: a new creation time if one were taken
	if again := build(); again != first {
		t.Errorf("unchanged rebuild: image %s, want %s", again, first)
	}
	if other := build("--no-cache"); other == first {
		t.Errorf("a rebuild that ran its RUN kept the image ID %s", first)
	}
}

// countTrees counts the extracted layer trees and copy-driver chains of a
// snapshot root.
func countTrees(root string) int {
	n := 0
	for _, dir := range []string{filepath.Join(root, "layers"), filepath.Join(root, "copy", "chains")} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
				n++
			}
		}
	}
	return n
}
