package main

// The multiarch case: both tools build one manifest list of two platforms
// (--platform linux/amd64,linux/arm64 --manifest NAME) from a
// two-platform base, with a --platform=$BUILDPLATFORM stage and one RUN
// that arm64 runs under qemu-user (binfmt_misc, set up by
// hack/foreign.sh). The check compares the trees platform by platform; the
// one thing it excuses is what buildah 1.28's cross-stage error changes:
// buildah runs the $BUILDPLATFORM stage again for every target, emulated,
// where it should run once, natively, so what that stage records about the
// machine it ran on (uname -m) differs in buildah's foreign images.

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"slices"
	"strings"
)

// nativePlatform is this machine's platform, the $BUILDPLATFORM.
var nativePlatform = "linux/" + runtime.GOARCH

// checkBinfmt checks that arm64 binaries run here (qemu-aarch64 registered
// in binfmt_misc with the F flag, so they run inside user namespaces too).
func checkBinfmt() error {
	data, err := os.ReadFile("/proc/sys/fs/binfmt_misc/qemu-aarch64")
	if err != nil {
		return fmt.Errorf("no qemu-aarch64 in binfmt_misc (%v): run hack/foreign.sh as root", err)
	}
	s := string(data)
	if !strings.HasPrefix(s, "enabled") {
		return fmt.Errorf("binfmt_misc qemu-aarch64 is disabled: run hack/foreign.sh as root")
	}
	for _, l := range strings.Split(s, "\n") {
		if f, ok := strings.CutPrefix(l, "flags: "); ok && !strings.Contains(f, "F") {
			return fmt.Errorf("binfmt_misc qemu-aarch64 lacks the F flag (flags %s): rootless RUN cannot find the interpreter", f)
		}
	}
	return nil
}

// exclusion is one file left out of the comparison because of buildah's
// cross-stage error.
type exclusion struct {
	Platform string `json:"platform"`
	Path     string `json:"path"`
	Builder  string `json:"builder"` // the file's content (short files), or its node
	Buildah  string `json:"buildah"`
	Why      string `json:"why"`
}

func (e exclusion) String() string {
	return fmt.Sprintf("%s %s: builder %s, buildah %s", e.Platform, e.Path, e.Builder, e.Buildah)
}

// checkMulti compares the two tools' manifest lists of case c (OCI
// layouts, tag latest) platform by platform and returns the files it
// excused.
func (b *bench) checkMulti(c benchCase, layouts map[string]string, logf func(string, ...any)) ([]exclusion, error) {
	want := slices.Sorted(slices.Values(c.platforms))
	if !slices.Contains(want, nativePlatform) {
		return nil, fmt.Errorf("%s: the platforms %v do not include this machine's, %s", c.name, want, nativePlatform)
	}
	trees := map[string]map[string]map[string]node{} // tool → platform → tree
	for _, tn := range []string{"builder", "buildah"} {
		got, err := layoutPlatforms(layouts[tn], "latest")
		if err != nil {
			return nil, fmt.Errorf("%s: %s's list: %w", c.name, tn, err)
		}
		if !slices.Equal(got, want) {
			return nil, fmt.Errorf("%s: %s's list has images for %v, want one for each of %v", c.name, tn, got, want)
		}
		trees[tn] = map[string]map[string]node{}
		for _, p := range want {
			t, err := mergedTreeFor(layouts[tn], "latest", p)
			if err != nil {
				return nil, fmt.Errorf("%s: %s's %s image: %w", c.name, tn, p, err)
			}
			trees[tn][p] = t
		}
	}
	var excluded []exclusion
	var failures []string
	for _, p := range want {
		excuse := func(k string) (string, bool) {
			if p == nativePlatform || c.crossStage == "" || !strings.HasPrefix(k, c.crossStage) {
				return "", false
			}
			// builder's image for p has the native run's file (the same as
			// its native image's), and buildah's native image agrees with
			// it: only buildah's p image, whose stage ran again under
			// emulation, differs.
			bn, okB := trees["builder"][nativePlatform][k]
			hn, okH := trees["buildah"][nativePlatform][k]
			bp := trees["builder"][p][k]
			bn.Implicit, hn.Implicit, bp.Implicit = false, false, false
			if !okB || !okH || bn != bp || hn != bn {
				return "", false
			}
			return fmt.Sprintf("written by the $BUILDPLATFORM stage: builder ran it once, on %s, for both images; buildah ran it again for %s, emulated", nativePlatform, p), true
		}
		d, tol, exc := diffTreesExcept(c.name, trees["builder"][p], trees["buildah"][p], excuse)
		for _, l := range tol {
			logf("%s %s: tolerated difference %s", c.name, p, l)
		}
		for _, l := range exc {
			k, why, _ := strings.Cut(l, ": ")
			e := exclusion{Platform: p, Path: k, Why: why,
				Builder: describe(layouts["builder"], p, k, trees["builder"][p][k]),
				Buildah: describe(layouts["buildah"], p, k, trees["buildah"][p][k])}
			logf("%s: excluded (buildah's cross-stage error): %s", c.name, e)
			excluded = append(excluded, e)
		}
		for _, l := range d {
			failures = append(failures, p+": "+l)
		}
		if len(d) == 0 {
			logf("correct: %s %s (%d entries, same tree from both tools but %d excluded)", c.name, p, len(trees["builder"][p]), len(exc))
		}
	}
	if len(failures) == 0 {
		return excluded, nil
	}
	fmt.Fprintf(b.log, "CORRECTNESS FAILURE: %s: builder's and buildah's images differ (%d differences):\n", c.name, len(failures))
	for i, l := range failures {
		if i == 40 {
			fmt.Fprintf(b.log, "  … %d more\n", len(failures)-i)
			break
		}
		fmt.Fprintln(b.log, "  "+l)
	}
	return nil, fmt.Errorf("correctness check failed for %s (layouts kept in %s): no timing reported", c.name, path.Dir(layouts["builder"]))
}

// describe is a short regular file's content, quoted, or the node.
func describe(layout, platform, p string, n node) string {
	if n.Type == "reg" && n.Size <= 64 {
		if data, err := fileIn(layout, platform, p); err == nil {
			return fmt.Sprintf("%q", data)
		}
	}
	return n.String()
}

// fileIn is the content of regular file p in the platform image of
// layout's index tagged latest (the last layer that has it).
func fileIn(layout, platform, p string) (string, error) {
	layers, err := platformLayers(layout, "latest", platform)
	if err != nil {
		return "", err
	}
	var out string
	found := false
	for _, l := range layers {
		rc, err := openLayer(layout, l)
		if err != nil {
			return "", err
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				rc.Close()
				return "", err
			}
			if path.Clean("/"+h.Name) == p && (h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeRegA) {
				data, err := io.ReadAll(io.LimitReader(tr, 4096))
				if err != nil {
					rc.Close()
					return "", err
				}
				out, found = string(data), true
			}
		}
		rc.Close()
	}
	if !found {
		return "", fmt.Errorf("%s: no %s in the %s image", layout, p, platform)
	}
	return out, nil
}
