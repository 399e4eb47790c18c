package main

// Deterministic inputs: the base image (an OCI layout written here, by
// neither tool under test) and one build context per case. The same seed
// gives the same bytes on every machine, so every run builds the same data.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"
)

// epoch is the mtime of every generated file.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// words make the compressible half of generated content (text compresses
// about 3:1 with gzip -6, the random half not at all: about 1.5:1 overall).
var words = strings.Fields(`alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike
november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu layer image build
cache store overlay digest manifest config rootfs tar gzip zstd push pull registry context copy run`)

// fill writes n deterministic bytes from rng to w: 64 KiB blocks that
// alternate between random bytes and lines of words.
func fill(w io.Writer, rng *rand.Rand, n int64) error {
	const block = 64 << 10
	buf := make([]byte, 0, block+128)
	for i := int64(0); n > 0; i++ {
		buf = buf[:0]
		size := min(n, block)
		if i%2 == 0 {
			for int64(len(buf)) < size {
				var b [8]byte
				v := rng.Uint64()
				for j := range b {
					b[j] = byte(v >> (8 * j))
				}
				buf = append(buf, b[:]...)
			}
		} else {
			for int64(len(buf)) < size {
				buf = append(buf, words[rng.IntN(len(words))]...)
				if rng.IntN(10) == 0 {
					buf = append(buf, '\n')
				} else {
					buf = append(buf, ' ')
				}
			}
		}
		if _, err := w.Write(buf[:size]); err != nil {
			return err
		}
		n -= size
	}
	return nil
}

func writeFile(path string, rng *rand.Rand, n int64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := fill(f, rng, n); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chtimes(path, epoch, epoch)
}

// benchCase is one build of the suite.
type benchCase struct {
	name     string
	desc     string
	runs     int // RUN steps (for the sandbox floor)
	editRuns int // RUN steps an edit invalidates
	// edit is the file (relative to the context) touched and edited.
	// "Dockerfile" means the edit changes the last instruction's "rev=0" to
	// "rev=1"; other files get their first 8 bytes overwritten.
	edit string
	// dockerfile is the Dockerfile; BASE is replaced by the FROM reference.
	dockerfile string
	// gen writes the context's files (besides the Dockerfile).
	gen func(dir string, rng *rand.Rand) error
	// zstdCI also times the CI flow with --compression zstd.
	zstdCI bool
	// platforms, when set, makes the case a multi-platform build: BASE is
	// then the multi-platform base (one image per platform, an index), each
	// tool builds a manifest list of these platforms, and the trees are
	// compared platform by platform.
	platforms []string
	// crossStage is where the final stage copies a --platform=$BUILDPLATFORM
	// stage's output to: the only place where buildah's cross-stage error
	// (it runs that stage once per target, under emulation, instead of once
	// natively) may make its trees differ (see crossStageDiffs).
	crossStage string
	// pod: also built inside the pod stand-in (bench pod, pod.go).
	pod bool
	// budFlags are added to every build of the case, per tool.
	budFlags map[string][]string
	// serial, when set, also times builder's cold build with these flags
	// (--jobs 1: the stages one after the other), as cold_jobs1.
	serial []string
	// wiped also times a cold build that follows the wipe of a store the
	// same build filled (as a CI runner with fresh pods does), as
	// cold_wiped: the file system is still busy freeing the old inodes.
	wiped bool
}

// spin is a busybox shell loop of about a second of CPU time on this
// class of machine (the parallel case's work).
const spin = `i=0; while [ $i -lt 650000 ]; do i=$((i+1)); done`

var allCases = []benchCase{
	{
		name: "meta", desc: "ENV/LABEL/WORKDIR/CMD only", edit: "Dockerfile",
		dockerfile: `FROM BASE
ENV APP_HOME=/srv APP_MODE=bench
LABEL org.example.bench=meta org.example.version=1
WORKDIR /srv
EXPOSE 8080
USER root
CMD ["/bin/sh", "-c", "echo rev=0"]
`,
	},
	{
		name: "run10", desc: "ten one-line RUN steps", runs: 10, editRuns: 1, edit: "Dockerfile", pod: true,
		dockerfile: "FROM BASE\n" + func() string {
			var b strings.Builder
			for i := 1; i <= 10; i++ {
				rev := ""
				if i == 10 {
					rev = " rev=0"
				}
				fmt.Fprintf(&b, "RUN echo step %d%s > /tmp/step%d\n", i, rev, i)
			}
			return b.String()
		}(),
	},
	{
		name: "copy-big", desc: "COPY of 200 MiB in 4 files", edit: "big/b.bin", zstdCI: true, pod: true,
		dockerfile: "FROM BASE\nCOPY big/ /data/\n",
		gen: func(dir string, rng *rand.Rand) error {
			for i, mib := range []int64{80, 60, 40, 20} {
				if err := writeFile(filepath.Join(dir, "big", fmt.Sprintf("%c.bin", 'a'+i)), rng, mib<<20); err != nil {
					return err
				}
			}
			return nil
		},
	},
	{
		name: "copy-many", desc: "COPY of 20,000 files (~98 MiB)", edit: "many/d100/f050.txt", wiped: true,
		dockerfile: "FROM BASE\nCOPY many/ /srv/many/\n",
		gen: func(dir string, rng *rand.Rand) error {
			for d := 0; d < 200; d++ {
				for f := 0; f < 100; f++ {
					p := filepath.Join(dir, "many", fmt.Sprintf("d%03d", d), fmt.Sprintf("f%03d.txt", f))
					if err := writeFile(p, rng, int64(1+rng.IntN(9))<<10); err != nil {
						return err
					}
				}
			}
			return nil
		},
	},
	{
		name: "multistage", desc: "two stages joined by COPY --from", runs: 1, editRuns: 1, edit: "src/part-07.txt",
		dockerfile: `FROM BASE AS build
COPY src/ /src/
RUN mkdir -p /out && cat /src/*.txt > /out/app.bin && sha256sum /out/app.bin > /out/app.sha256
FROM BASE
COPY --from=build /out/ /app/
CMD ["/bin/cat", "/app/app.sha256"]
`,
		gen: func(dir string, rng *rand.Rand) error {
			for i := 0; i < 40; i++ {
				if err := writeFile(filepath.Join(dir, "src", fmt.Sprintf("part-%02d.txt", i)), rng, 512<<10); err != nil {
					return err
				}
			}
			return nil
		},
	},
	{
		name: "run-heavy", desc: "one RUN writing 300 MiB", runs: 1, editRuns: 1, edit: "Dockerfile",
		dockerfile: `FROM BASE
RUN mkdir -p /data && for i in $(seq 1 300); do cat /usr/share/bench/seed; done > /data/blob.bin && echo rev=0 > /data/version
`,
	},
	{
		name: "rm-whiteout", desc: "RUN deleting files of earlier layers", runs: 1, editRuns: 1, edit: "tree/d02/f007.txt",
		dockerfile: `FROM BASE
COPY tree/ /data/
RUN rm -rf /data/d01 /data/d03 /usr/share/bench/doc && rm -f /data/d00/f00*.txt /bin/wget && rm -rf /data/d05 && mkdir /data/d05 && echo new > /data/d05/only
`,
		gen: func(dir string, rng *rand.Rand) error {
			for d := 0; d < 10; d++ {
				for f := 0; f < 200; f++ {
					p := filepath.Join(dir, "tree", fmt.Sprintf("d%02d", d), fmt.Sprintf("f%03d.txt", f))
					if err := writeFile(p, rng, int64(1+rng.IntN(9))<<10); err != nil {
						return err
					}
				}
			}
			return nil
		},
	},
	{
		name: "parallel", desc: "two independent stages (COPY + ~1 s CPU RUN each) joined in a third",
		runs: 2, editRuns: 1, edit: "a/part-03.txt",
		budFlags: map[string][]string{"buildah": {"--jobs", "2"}}, serial: []string{"--jobs", "1"},
		dockerfile: `FROM BASE AS a
COPY a/ /src/
RUN ` + spin + `; cat /src/*.txt | md5sum > /a.sum && echo $i >> /a.sum
FROM BASE AS b
COPY b/ /src/
RUN ` + spin + `; cat /src/*.txt | md5sum > /b.sum && echo $i >> /b.sum
FROM BASE
COPY --from=a /a.sum /out/a.sum
COPY --from=b /b.sum /out/b.sum
`,
		gen: func(dir string, rng *rand.Rand) error {
			for _, st := range []string{"a", "b"} {
				for i := 0; i < 8; i++ {
					if err := writeFile(filepath.Join(dir, st, fmt.Sprintf("part-%02d.txt", i)), rng, 256<<10); err != nil {
						return err
					}
				}
			}
			return nil
		},
	},
	{
		name: "multiarch", desc: "linux/amd64 + linux/arm64 manifest list: a $BUILDPLATFORM stage, one emulated RUN",
		runs: 3, editRuns: 3, edit: "src/part-07.txt",
		platforms: []string{"linux/amd64", "linux/arm64"}, crossStage: "/app/",
		// The build stage depends on no target: builder runs it once,
		// natively, for both platforms. Its tarball is reproducible (fixed
		// mtimes, gzip of a stream), so only built-on says where it ran.
		dockerfile: `FROM --platform=$BUILDPLATFORM BASE AS build
COPY src/ /src/
RUN mkdir -p /out/gen && cd /out/gen && for i in $(seq 1 300); do echo "/* generated unit $i */" > unit$i.h; done && cd /src && for f in *.txt; do sed 's/alpha/ALPHA/g' "$f" > /out/gen/"$f"; done && cd /out && touch -t 202401010000 gen gen/* && tar -cf - gen | gzip -6 > app.tar.gz && sha256sum app.tar.gz > app.sha256 && uname -m > /out/built-on
FROM BASE
ARG TARGETARCH
COPY --from=build /out/ /app/
RUN uname -m > /arch && echo $TARGETARCH > /target
`,
		gen: func(dir string, rng *rand.Rand) error {
			for i := 0; i < 20; i++ {
				var b strings.Builder
				for b.Len() < 32<<10 {
					b.WriteString(words[rng.IntN(len(words))])
					if rng.IntN(10) == 0 {
						b.WriteByte('\n')
					} else {
						b.WriteByte(' ')
					}
				}
				p := filepath.Join(dir, "src", fmt.Sprintf("part-%02d.txt", i))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					return err
				}
				if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
					return err
				}
				if err := os.Chtimes(p, epoch, epoch); err != nil {
					return err
				}
			}
			return nil
		},
	},
}

func caseByName(name string) (benchCase, bool) {
	for _, c := range allCases {
		if c.name == name {
			return c, true
		}
	}
	return benchCase{}, false
}

// genContext writes case c's context into dir (removed first).
func genContext(c benchCase, dir, from string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	df := strings.Replace(c.dockerfile, "BASE", from, -1)
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		return err
	}
	if err := os.Chtimes(filepath.Join(dir, "Dockerfile"), epoch, epoch); err != nil {
		return err
	}
	if c.gen != nil {
		h := sha256.Sum256([]byte(c.name))
		rng := rand.New(rand.NewPCG(0x6275696c646572, uint64(h[0])<<8|uint64(h[1])))
		if err := c.gen(dir, rng); err != nil {
			return err
		}
	}
	// Directories get the fixed mtime too (bottom-up, after their files).
	var dirs []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return err
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		os.Chtimes(dirs[i], epoch, epoch)
	}
	return nil
}

// baseEntry is one file of the base image's single layer.
type baseEntry struct {
	hdr  tar.Header
	data []byte
}

// baseRootfs lists the base image: Debian's static busybox with every
// applet linked in /bin, passwd/group, a 1 MiB seed file for run-heavy and
// a file rm-whiteout deletes.
func baseRootfs() ([]baseEntry, error) {
	bb := "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		if bb, err = exec.LookPath("busybox"); err != nil {
			return nil, fmt.Errorf("busybox-static is needed for the base image: %w", err)
		}
	}
	return busyboxRootfs(bb)
}

// busyboxRootfs is baseRootfs with the static busybox bb (another
// architecture's runs through binfmt_misc for its applet list).
func busyboxRootfs(bb string) ([]baseEntry, error) {
	bin, err := os.ReadFile(bb)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", bb, err)
	}
	var ents []baseEntry
	dir := func(name string, mode int64, uid int) {
		ents = append(ents, baseEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: uid}})
	}
	file := func(name string, mode int64, data []byte) {
		ents = append(ents, baseEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}, data: data})
	}
	for _, d := range []string{"bin", "etc", "home", "usr", "usr/share", "usr/share/bench", "usr/share/bench/doc", "var", "var/log"} {
		dir(d, 0o755, 0)
	}
	dir("root", 0o700, 0)
	dir("tmp", 0o1777, 0)
	dir("home/app", 0o755, 1000)
	file("bin/busybox", 0o755, bin)
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		ents = append(ents, baseEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777}})
	}
	file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
	file("etc/group", 0o644, []byte("root:x:0:\nwheel:x:10:app\napp:x:1000:\nnogroup:x:65534:\n"))
	var seed bytes.Buffer
	if err := fill(&seed, rand.New(rand.NewPCG(1, 2)), 1<<20); err != nil {
		return nil, err
	}
	file("usr/share/bench/seed", 0o644, seed.Bytes())
	for i := 0; i < 20; i++ {
		file(fmt.Sprintf("usr/share/bench/doc/page%02d.txt", i), 0o644, bytes.Repeat([]byte(fmt.Sprintf("page %d\n", i)), 100))
	}
	sort.SliceStable(ents, func(i, j int) bool { return ents[i].hdr.Name < ents[j].hdr.Name })
	for i := range ents {
		h := &ents[i].hdr
		h.ModTime, h.Format = epoch, tar.FormatPAX
		h.Uname, h.Gname = "", ""
	}
	return ents, nil
}

// writeRootfsDir lays the base rootfs out in dir (for the sandbox floor).
func writeRootfsDir(ents []baseEntry, dir string) error {
	for _, e := range ents {
		p := filepath.Join(dir, e.hdr.Name)
		switch e.hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.WriteFile(p, e.data, os.FileMode(e.hdr.Mode)&0o777); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(e.hdr.Linkname, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeBaseLayout writes the base image as an OCI layout with tag "latest".
func writeBaseLayout(ents []baseEntry, dir string) error {
	return writeLayout(dir, "builder bench base (busybox-static)", ents)
}

// writeLayout writes an image of the given layers (gzip) as an OCI layout
// with tag "latest".
func writeLayout(dir, createdBy string, layers ...[]baseEntry) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	man, err := writeImage(dir, runtime.GOARCH, createdBy, layers...)
	if err != nil {
		return err
	}
	return writeIndexJSON(dir, man)
}

// writeMultiBaseLayout writes the multi-platform base: an OCI layout whose
// index.json names, under "latest", an image index of one base image per
// architecture, each the base rootfs with that architecture's static
// busybox (busyboxes: architecture → binary).
func writeMultiBaseLayout(dir string, busyboxes map[string]string) error {
	images := map[string][]baseEntry{}
	for arch, bb := range busyboxes {
		ents, err := busyboxRootfs(bb)
		if err != nil {
			return err
		}
		images[arch] = ents
	}
	return writeIndexLayout(dir, "builder bench base (busybox-static)", images)
}

// writeIndexLayout writes an OCI layout whose index.json names, under
// "latest", an image index of one single-layer linux image per
// architecture (images: architecture → the layer's entries).
func writeIndexLayout(dir, createdBy string, images map[string][]baseEntry) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	var mans []map[string]any
	for _, arch := range slices.Sorted(maps.Keys(images)) {
		man, err := writeImage(dir, arch, createdBy+", "+arch, images[arch])
		if err != nil {
			return err
		}
		man["platform"] = map[string]string{"os": "linux", "architecture": arch}
		mans = append(mans, man)
	}
	idx, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     mans,
	})
	d, n, err := putBlob(dir, idx)
	if err != nil {
		return err
	}
	return writeIndexJSON(dir, map[string]any{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": n})
}

// putBlob stores data in layout dir's blobs.
func putBlob(dir string, data []byte) (string, int64, error) {
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return "", 0, err
	}
	sum := sha256.Sum256(data)
	d := hex.EncodeToString(sum[:])
	return "sha256:" + d, int64(len(data)), os.WriteFile(filepath.Join(blobs, d), data, 0o644)
}

// writeIndexJSON writes index.json naming desc "latest", and oci-layout.
func writeIndexJSON(dir string, desc map[string]any) error {
	desc["annotations"] = map[string]string{"org.opencontainers.image.ref.name": "latest"}
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []map[string]any{desc}})
	if err := os.WriteFile(filepath.Join(dir, "index.json"), idx, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}

// writeImage writes the blobs of a linux/arch image of the given layers
// (gzip) into layout dir and returns its manifest's descriptor.
func writeImage(dir, arch, createdBy string, layers ...[]baseEntry) (map[string]any, error) {
	var diffIDs []string
	var descs []map[string]any
	var history []map[string]any
	for _, ents := range layers {
		var tb bytes.Buffer
		tw := tar.NewWriter(&tb)
		for _, e := range ents {
			h := e.hdr
			if err := tw.WriteHeader(&h); err != nil {
				return nil, err
			}
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
		if err := tw.Close(); err != nil {
			return nil, err
		}
		diffSum := sha256.Sum256(tb.Bytes())
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
		zw.Write(tb.Bytes())
		if err := zw.Close(); err != nil {
			return nil, err
		}
		layerDigest, layerSize, err := putBlob(dir, gz.Bytes())
		if err != nil {
			return nil, err
		}
		diffIDs = append(diffIDs, "sha256:"+hex.EncodeToString(diffSum[:]))
		descs = append(descs, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layerDigest, "size": layerSize})
		history = append(history, map[string]any{"created": epoch.Format(time.RFC3339), "created_by": createdBy})
	}
	cfg, _ := json.Marshal(map[string]any{
		"created":      epoch.Format(time.RFC3339),
		"architecture": arch,
		"os":           "linux",
		"config": map[string]any{
			"Env": []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			"Cmd": []string{"/bin/sh"},
		},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": diffIDs},
		"history": history,
	})
	cfgDigest, cfgSize, err := putBlob(dir, cfg)
	if err != nil {
		return nil, err
	}
	man, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfgDigest, "size": cfgSize},
		"layers":        descs,
	})
	manDigest, manSize, err := putBlob(dir, man)
	if err != nil {
		return nil, err
	}
	return map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manDigest, "size": manSize}, nil
}

// writeMultiBase writes the multiarch case's base, an index of a
// linux/amd64 and a linux/arm64 image, from the host's busybox-static
// (this machine must be amd64) and the arm64 one hack/foreign.sh extracts.
func writeMultiBase(dir, arm64Busybox string) error {
	if runtime.GOARCH != "amd64" {
		return fmt.Errorf("the multi-platform base takes arm64 as the foreign platform: run on amd64")
	}
	host := "/bin/busybox"
	if _, err := os.Stat(host); err != nil {
		if host, err = exec.LookPath("busybox"); err != nil {
			return fmt.Errorf("busybox-static is needed for the base image: %w", err)
		}
	}
	if _, err := os.Stat(arm64Busybox); err != nil {
		return fmt.Errorf("arm64 busybox (hack/foreign.sh extracts it): %w", err)
	}
	return writeMultiBaseLayout(dir, map[string]string{"amd64": host, "arm64": arm64Busybox})
}
