// Command bench is builder's benchmark suite: it builds a fixed set of
// cases with builder and with buildah in the same run, as the same
// (unprivileged) user, from the same base image, checks that both tools
// produce the same file tree, then times cold builds, rebuilds, pushes and
// the CI flow against each other and against floors measured on the same
// data. bench/run.sh (make bench) prepares the machine and runs it.
//
//	bench run --work DIR --builder BIN [--repeat N] [--cases a,b] [--out results.json] [--table results.md]
//	bench diff LAYOUT_A TAG_A LAYOUT_B TAG_B [OS/ARCH]  compare two images' merged trees (of an index: that platform's)
//	bench du DIR                               apparent size of a tree (run inside the user namespace)
//	bench gen [--arm64-busybox F] DIR [CASE...] write the base layouts and contexts only (to try things by hand)
//	bench pod --work DIR --builder BIN --image IMG --out pod.json [run's flags]  time the pod stand-in (as root; see pod.go)
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = cmdRun(os.Args[2:])
	case "diff":
		err = cmdDiff(os.Args[2:])
	case "du":
		err = cmdDu(os.Args[2:])
	case "gen":
		err = cmdGen(os.Args[2:])
	case "pod":
		err = cmdPod(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: bench run --work DIR --builder BIN [--repeat N] [--cases a,b] [--arm64-busybox FILE] [--out FILE] [--table FILE] [--pod pod.json]\n       bench pod --work DIR --builder BIN --image IMG --out FILE [--repeat N] [--cases a,b] [--base oci|registry]\n       bench diff LAYOUT_A TAG_A LAYOUT_B TAG_B [OS/ARCH]\n       bench du DIR\n       bench gen [--arm64-busybox FILE] DIR [CASE...]")
	os.Exit(2)
}

func cmdDu(args []string) error {
	var total int64
	seen := map[uint64]bool{}
	for _, dir := range args {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 && !fi.IsDir() {
				if seen[st.Ino] {
					return nil
				}
				seen[st.Ino] = true
			}
			total += fi.Size()
			return nil
		})
		if err != nil {
			return err
		}
	}
	fmt.Println(total)
	return nil
}

func cmdGen(args []string) error {
	fl := flag.NewFlagSet("gen", flag.ExitOnError)
	arm64 := fl.String("arm64-busybox", "", "arm64 static busybox (hack/foreign.sh): also write the multi-platform base")
	fl.Parse(args)
	args = fl.Args()
	if len(args) < 1 {
		usage()
	}
	dir, _ := filepath.Abs(args[0])
	ents, err := baseRootfs()
	if err != nil {
		return err
	}
	if err := writeBaseLayout(ents, filepath.Join(dir, "base-oci")); err != nil {
		return err
	}
	multi := filepath.Join(dir, "base-multi-oci")
	if *arm64 != "" {
		if err := writeMultiBase(multi, *arm64); err != nil {
			return err
		}
	}
	for _, c := range allCases {
		if len(args) > 1 && !slices.Contains(args[1:], c.name) {
			continue
		}
		from := "oci:" + filepath.Join(dir, "base-oci") + ":latest"
		if c.platforms != nil {
			if *arm64 == "" {
				continue
			}
			from = "oci:" + multi + ":latest"
		}
		if err := genContext(c, filepath.Join(dir, "ctx", c.name), from); err != nil {
			return err
		}
	}
	return nil
}

func cmdDiff(args []string) error {
	if len(args) != 4 && len(args) != 5 {
		usage()
	}
	platform := ""
	if len(args) == 5 {
		platform = args[4]
	}
	a, err := mergedTreeFor(args[0], args[1], platform)
	if err != nil {
		return err
	}
	b, err := mergedTreeFor(args[2], args[3], platform)
	if err != nil {
		return err
	}
	d, tol := diffTrees("", a, b)
	for _, l := range tol {
		fmt.Println("tolerated:", l)
	}
	for _, l := range d {
		fmt.Println(l)
	}
	if len(d) > 0 {
		return fmt.Errorf("%d differences", len(d))
	}
	fmt.Printf("same tree (%d entries)\n", len(a))
	return nil
}

// measurement is one timed command.
type measurement struct {
	Wall       float64 `json:"wall_s"`
	User       float64 `json:"user_s"`
	Sys        float64 `json:"sys_s"`
	MaxRSSKiB  int64   `json:"max_rss_kib"`
	WriteBytes int64   `json:"write_bytes"` // /proc io write_bytes of the process tree
	ReadBytes  int64   `json:"read_bytes"`
	WChar      int64   `json:"wchar"`
}

type ioCounters struct{ read, write, wchar int64 }

// selfIO reads this process's /proc io counters. When a child is reaped,
// the kernel adds its counters (and those of the children it reaped) to
// ours, so the difference around one waited-for command is that command's
// whole process tree (builder's re-exec into a user namespace, buildah's
// runc, ...).
func selfIO() ioCounters {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return ioCounters{}
	}
	var c ioCounters
	for _, l := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(l, ": ")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch k {
		case "read_bytes":
			c.read = n
		case "write_bytes":
			c.write = n
		case "wchar":
			c.wchar = n
		}
	}
	return c
}

type bench struct {
	work     string
	builder  string
	self     string
	registry string // 127.0.0.1:PORT, "" when none
	log      io.Writer
	verbose  bool
	timedSum float64            // seconds spent in timed commands
	overhead map[string]float64 // seconds spent around them, by kind
	trashed  int                // stores moved to <work>/trash so far
}

// spent adds the time since t to overhead kind k.
func (b *bench) spent(k string, t time.Time) {
	if b.overhead == nil {
		b.overhead = map[string]float64{}
	}
	b.overhead[k] += time.Since(t).Seconds()
}

// run runs argv (untimed) and returns its stdout; failures include output.
func (b *bench) run(argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %v\n%s%s", strings.Join(argv, " "), err, tail(out.String()), tail(errb.String()))
	}
	return out.String(), nil
}

func tail(s string) string {
	if len(s) > 4000 {
		s = "…" + s[len(s)-4000:]
	}
	return s
}

// timed runs argv once under GNU time and measures it: wall time, CPU,
// peak RSS of the process tree (time -f %M: the largest resident set among
// the command and the descendants it waited for, so builder's re-exec into
// a user namespace and buildah's runc count) and bytes written. GNU time
// forks; Go's own exec would start the child from this process's memory
// high-water mark, which would leak into the figure.
func (b *bench) timed(argv ...string) (measurement, error) {
	t0 := time.Now()
	syscall.Sync() // start every measurement without someone else's dirty pages
	b.spent("sync", t0)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	tf := filepath.Join(b.work, "time.out")
	os.Remove(tf)
	cmd := exec.CommandContext(ctx, "/usr/bin/time", append([]string{"-o", tf, "-f", "%M"}, argv...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	before := selfIO()
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start).Seconds()
	after := selfIO()
	b.timedSum += wall
	if b.verbose {
		fmt.Fprintf(b.log, "  %.3fs %s\n", wall, strings.Join(argv, " "))
	}
	if err != nil {
		return measurement{}, fmt.Errorf("%s: %v\n%s%s", strings.Join(argv, " "), err, tail(out.String()), tail(errb.String()))
	}
	m := measurement{Wall: wall, WriteBytes: after.write - before.write, ReadBytes: after.read - before.read, WChar: after.wchar - before.wchar}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.User = time.Duration(ru.Utime.Nano()).Seconds()
		m.Sys = time.Duration(ru.Stime.Nano()).Seconds()
	}
	data, err := os.ReadFile(tf)
	if err != nil {
		return m, fmt.Errorf("/usr/bin/time output: %w", err)
	}
	fields := strings.Fields(string(data))
	if len(fields) == 0 {
		return m, fmt.Errorf("/usr/bin/time output %q", data)
	}
	if m.MaxRSSKiB, err = strconv.ParseInt(fields[len(fields)-1], 10, 64); err != nil {
		return m, fmt.Errorf("/usr/bin/time output %q: %w", data, err)
	}
	return m, nil
}

// store is one tool's fresh containers/storage store.
type store struct{ root, runroot string }

func (b *bench) newStore(name string) (store, error) {
	s := store{filepath.Join(b.work, "stores", name, "root"), filepath.Join(b.work, "stores", name, "run")}
	b.removeStore(s)
	for _, d := range []string{s.root, s.runroot} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return s, err
		}
	}
	return s, nil
}

// removeStore moves a store out of the way, into <work>/trash, which
// run.sh deletes after the last measurement. Deleting it here would time
// the file system instead of the next build: ext4 without a journal scans
// for inodes that were not freed in the last 30 s on every create, so a
// build started right after deleting a 60,000-file store ran 2-5x slower,
// for either tool, and more so with every deletion.
func (b *bench) removeStore(s store) {
	defer b.spent("rm", time.Now())
	dir := filepath.Dir(s.root)
	if _, err := os.Stat(dir); err != nil {
		return
	}
	trash := filepath.Join(b.work, "trash")
	os.MkdirAll(trash, 0o700)
	b.trashed++
	if err := os.Rename(dir, filepath.Join(trash, fmt.Sprintf("%d-%s", b.trashed, filepath.Base(dir)))); err != nil {
		fmt.Fprintln(b.log, "warning:", err)
	}
}

// wipeStore deletes a store for real (inside the user namespace, where
// its files' owners are mapped), unlike removeStore.
func (b *bench) wipeStore(s store) error {
	defer b.spent("wipe", time.Now())
	_, err := b.run("buildah", "unshare", "rm", "-rf", filepath.Dir(s.root))
	return err
}

// wipedSequence times a cold build that follows the wipe of a store the
// same build filled, at once: the file system is still reclaiming what the
// wipe freed (as on a CI runner whose pods start from nothing). cmdRun runs
// these after every other measurement: for minutes after a wipe every
// file create is slower, for whichever tool comes next.
func (b *bench) wipedSequence(t tool, c benchCase, ctxDir string, rep int, tr *toolResult) error {
	name := fmt.Sprintf("%s-%s-%d", t.name, c.name, rep)
	tag := "localhost/bench-" + c.name
	s2, err := b.newStore(name + "-wipe")
	if err != nil {
		return err
	}
	_, err = b.run(t.bud(s2, tag, ctxDir, c.budFlags[t.name]...)...)
	if werr := b.wipeStore(s2); err == nil {
		err = werr
	}
	if err != nil {
		return err
	}
	s3, err := b.newStore(name + "-wiped")
	if err != nil {
		return err
	}
	m, err := b.timed(t.bud(s3, tag, ctxDir, c.budFlags[t.name]...)...)
	b.removeStore(s3)
	if err != nil {
		return err
	}
	tr.Measures["cold_wiped"] = append(tr.Measures["cold_wiped"], m)
	return nil
}

// du is the apparent size of a store, measured inside the user namespace.
func (b *bench) du(s store) int64 {
	defer b.spent("du", time.Now())
	out, err := b.run("buildah", "unshare", b.self, "du", s.root, s.runroot)
	if err != nil {
		fmt.Fprintln(b.log, "warning:", err)
		return -1
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	return n
}

// tool knows how to drive one builder.
type tool struct {
	name string
	// bud returns the build command; push the push command (nil: none).
	bud  func(s store, tag, ctxDir string, extra ...string) []string
	push func(s store, tag, dest string) []string
	// ciPush builds and pushes in one command (nil: bud, then push).
	ciPush func(s store, ref, ctxDir string, extra ...string) []string
	// pushZstd pushes with zstd compression (the CI flow with zstd when
	// there is no ciPush).
	pushZstd func(s store, tag, dest string) []string
	// export writes the image tagged tag to an OCI layout (the
	// correctness check).
	export func(s store, tag, ctxDir, dest string) [][]string
	// budList builds one image per platform into the manifest list named
	// list (--platform P1,P2 --manifest list); exportList writes that list
	// to an OCI layout, an index tagged latest.
	budList    func(s store, list, ctxDir string, platforms []string) []string
	exportList func(s store, list, ctxDir, dest string, platforms []string) [][]string
}

func (b *bench) tools(f features, tlsFlag bool) []tool {
	g := func(s store) []string {
		return []string{"--root", s.root, "--runroot", s.runroot, "--storage-driver", "overlay"}
	}
	tls := func(on bool) []string {
		if on {
			return []string{"--tls-verify=false"}
		}
		return nil
	}
	builder := tool{
		name: "builder",
		bud: func(s store, tag, ctxDir string, extra ...string) []string {
			a := append([]string{b.builder}, g(s)...)
			a = append(a, "bud", "-q", "--network=host")
			a = append(a, tls(tlsFlag)...)
			a = append(a, extra...)
			return append(a, "-t", tag, ctxDir)
		},
		// Without builder push: the same build again, with an OCI output.
		export: func(s store, tag, ctxDir, dest string) [][]string {
			a := append([]string{b.builder}, g(s)...)
			a = append(a, "bud", "-q", "--network=host")
			a = append(a, tls(tlsFlag)...)
			return [][]string{append(a, "-t", tag, "-o", "type=oci,dest="+dest, ctxDir)}
		},
	}
	// A multi-platform build: the same flags as buildah's, builder's own
	// defaults (--jobs: as many platforms at once as CPUs; buildah builds
	// every platform concurrently).
	builder.budList = func(s store, list, ctxDir string, platforms []string) []string {
		a := append([]string{b.builder}, g(s)...)
		a = append(a, "bud", "-q", "--network=host")
		a = append(a, tls(tlsFlag)...)
		return append(a, "--platform", strings.Join(platforms, ","), "--manifest", list, ctxDir)
	}
	builder.exportList = func(s store, list, ctxDir, dest string, platforms []string) [][]string {
		a := append([]string{b.builder}, g(s)...)
		a = append(a, "bud", "-q", "--network=host")
		a = append(a, tls(tlsFlag)...)
		return [][]string{append(a, "--platform", strings.Join(platforms, ","), "-t", list, "-o", "type=oci,dest="+dest, ctxDir)}
	}
	if f.push {
		builder.exportList = func(s store, list, ctxDir, dest string, platforms []string) [][]string {
			return [][]string{append(append([]string{b.builder}, g(s)...), "push", "-q", list, "oci:"+dest+":latest")}
		}
		builder.push = func(s store, tag, dest string) []string {
			return append(append([]string{b.builder}, g(s)...), "push", "--tls-verify=false", "-q", tag, dest)
		}
		builder.export = func(s store, tag, ctxDir, dest string) [][]string {
			return [][]string{append(append([]string{b.builder}, g(s)...), "push", "-q", tag, "oci:"+dest+":latest")}
		}
	}
	if f.budPush {
		builder.ciPush = func(s store, ref, ctxDir string, extra ...string) []string {
			a := append([]string{b.builder}, g(s)...)
			a = append(a, "bud", "-q", "--network=host", "--tls-verify=false", "--push")
			return append(append(a, extra...), "-t", ref, ctxDir)
		}
	}
	buildah := tool{
		name: "buildah",
		bud: func(s store, tag, ctxDir string, extra ...string) []string {
			a := append([]string{"buildah"}, g(s)...)
			a = append(a, "bud", "--runtime=runc", "--network=host", "--layers", "-q")
			a = append(a, tls(tlsFlag)...)
			a = append(a, extra...)
			return append(a, "-t", tag, ctxDir)
		},
		push: func(s store, tag, dest string) []string {
			return append(append([]string{"buildah"}, g(s)...), "push", "--tls-verify=false", "-q", tag, dest)
		},
		pushZstd: func(s store, tag, dest string) []string {
			return append(append([]string{"buildah"}, g(s)...), "push", "--tls-verify=false", "-q", "--compression-format", "zstd", tag, dest)
		},
	}
	buildah.export = func(s store, tag, ctxDir, dest string) [][]string {
		return [][]string{append(append([]string{"buildah"}, g(s)...), "push", "-q", tag, "oci:"+dest+":latest")}
	}
	buildah.budList = func(s store, list, ctxDir string, platforms []string) []string {
		a := append([]string{"buildah"}, g(s)...)
		a = append(a, "bud", "--runtime=runc", "--network=host", "--layers", "-q")
		a = append(a, tls(tlsFlag)...)
		return append(a, "--platform", strings.Join(platforms, ","), "--manifest", list, ctxDir)
	}
	buildah.exportList = func(s store, list, ctxDir, dest string, platforms []string) [][]string {
		return [][]string{append(append([]string{"buildah"}, g(s)...), "manifest", "push", "-q", "--all", list, "oci:"+dest+":latest")}
	}
	return []tool{builder, buildah}
}

// features of the builder binary under test.
type features struct {
	push, budPush, budTLS bool
	hashContext           bool // builder cache hash-context
	version               string
}

func (b *bench) probe() features {
	var f features
	if _, err := b.run(b.builder, "push", "--help"); err == nil {
		f.push = true
	}
	if out, err := b.run(b.builder, "bud", "--help"); err == nil {
		f.budPush = strings.Contains(out, "--push")
		f.budTLS = strings.Contains(out, "--tls-verify")
	}
	if _, err := b.run(b.builder, "cache", "hash-context", "--help"); err == nil {
		f.hashContext = true
	}
	if out, err := b.run(b.builder, "version"); err == nil {
		f.version = strings.TrimSpace(out)
	}
	return f
}

// startRegistry starts Debian's docker-registry on a free 127.0.0.1 port.
func (b *bench) startRegistry() (func(), error) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	dir := filepath.Join(b.work, "registry")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s/data\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", dir, addr)
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", filepath.Join(dir, "config.yml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
	}
	for i := 0; i < 100; i++ {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				b.registry = addr
				return stop, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	data, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
	return nil, fmt.Errorf("registry on %s did not start: %s", addr, data)
}

// clearBlobInfoCache removes the user's containers/image blob-info cache,
// so no push learns from an earlier one that a registry has a blob.
func clearBlobInfoCache() {
	if home, err := os.UserHomeDir(); err == nil {
		os.RemoveAll(filepath.Join(home, ".local/share/containers/cache"))
	}
}

// editor touches and edits one file of a context and restores it.
type editor struct {
	path    string
	dockerf bool
	orig    []byte
	mtime   time.Time
}

func newEditor(ctxDir string, c benchCase) (*editor, error) {
	e := &editor{path: filepath.Join(ctxDir, c.edit), dockerf: c.edit == "Dockerfile"}
	fi, err := os.Stat(e.path)
	if err != nil {
		return nil, err
	}
	e.mtime = fi.ModTime()
	if e.dockerf {
		if e.orig, err = os.ReadFile(e.path); err != nil {
			return nil, err
		}
		if !bytes.Contains(e.orig, []byte("rev=0")) {
			return nil, fmt.Errorf("%s: no rev=0 to edit", e.path)
		}
	} else {
		f, err := os.Open(e.path)
		if err != nil {
			return nil, err
		}
		e.orig = make([]byte, 8)
		_, err = io.ReadFull(f, e.orig)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (e *editor) touch() error {
	t := time.Now()
	if !t.After(e.mtime) {
		t = e.mtime.Add(time.Second)
	}
	return os.Chtimes(e.path, t, t)
}

func (e *editor) edit() error {
	if e.dockerf {
		return os.WriteFile(e.path, bytes.Replace(e.orig, []byte("rev=0"), []byte("rev=1"), 1), 0o644)
	}
	return e.overwrite([]byte("EDITED!\n"))
}

func (e *editor) overwrite(p []byte) error {
	f, err := os.OpenFile(e.path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(p, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (e *editor) restore() error {
	var err error
	if e.dockerf {
		err = os.WriteFile(e.path, e.orig, 0o644)
	} else {
		err = e.overwrite(e.orig)
	}
	if err != nil {
		return err
	}
	return os.Chtimes(e.path, e.mtime, e.mtime)
}

// Result files.

type toolResult struct {
	Measures  map[string][]measurement `json:"measures"` // cold, push, warm, touch, edit, ci
	StoreCold []int64                  `json:"store_bytes_after_cold"`
	StoreEnd  []int64                  `json:"store_bytes_after_edit"`
	CIMode    string                   `json:"ci_mode"`
}

type caseResult struct {
	Desc      string   `json:"description"`
	Platforms []string `json:"platforms,omitempty"`
	// Excluded are the files left out of the tree comparison because of
	// buildah's cross-stage error (multi-platform cases).
	Excluded []exclusion            `json:"excluded_cross_stage,omitempty"`
	Floors   caseFloors             `json:"floors"`
	Tools    map[string]*toolResult `json:"tools"`
	Summary  map[string]summaryRow  `json:"summary"`
}

type summaryRow struct {
	Unit           string   `json:"unit"`
	Builder        *stat    `json:"builder,omitempty"`
	Buildah        *stat    `json:"buildah,omitempty"`
	BuilderBuildah *float64 `json:"builder_over_buildah,omitempty"`
	Floor          *float64 `json:"floor,omitempty"`
	BuilderFloor   *float64 `json:"builder_over_floor,omitempty"`
	BuildahFloor   *float64 `json:"buildah_over_floor,omitempty"`
}

type results struct {
	Machine    map[string]any         `json:"machine"`
	Config     map[string]any         `json:"config"`
	Sandbox    stat                   `json:"floor_sandbox_start_s"`
	Cases      map[string]*caseResult `json:"cases"`
	Order      []string               `json:"case_order"`
	PerRun     map[string]any         `json:"per_run_overhead,omitempty"`
	Acceptance map[string]any         `json:"acceptance"`
	// Pod is the pod stand-in's cold builds (bench pod), with the host's.
	Pod         *podSection `json:"pod,omitempty"`
	WallSeconds float64     `json:"wall_seconds"`
}

// runFlags are the flags of bench run; bench pod takes the same (run.sh
// passes its arguments to both) and uses those it needs.
type runFlags struct {
	fl                                            *flag.FlagSet
	work, builder, cases, out, table, base, arm64 *string
	pod, image                                    *string
	repeat                                        *int
	verbose                                       *bool
}

func newRunFlags(name string) runFlags {
	fl := flag.NewFlagSet(name, flag.ExitOnError)
	return runFlags{
		fl:      fl,
		work:    fl.String("work", "", "scratch directory (required)"),
		builder: fl.String("builder", "", "builder binary (required)"),
		repeat:  fl.Int("repeat", 3, "repetitions of every measurement (min and median are reported)"),
		cases:   fl.String("cases", "", "comma-separated cases (default: all)"),
		out:     fl.String("out", "results.json", "results JSON"),
		table:   fl.String("table", "", "also write the Markdown table here"),
		base:    fl.String("base", "oci", "base image source: oci (an OCI layout on disk) or registry (the local registry)"),
		arm64:   fl.String("arm64-busybox", "", "arm64 static busybox for the multi-platform base (hack/foreign.sh extracts it; needed by multi-platform cases)"),
		verbose: fl.Bool("v", false, "print every timed command"),
		pod:     fl.String("pod", "", "run: the pod stand-in's timings (bench pod's --out) to report next to the host's"),
		image:   fl.String("image", "", "pod: the pod stand-in image (hack/image.sh), in root's podman store"),
	}
}

// selectCases is the cases named in a --cases value (all when empty).
func selectCases(list string) ([]benchCase, error) {
	if list == "" {
		return allCases, nil
	}
	var cases []benchCase
	for _, n := range strings.Split(list, ",") {
		c, ok := caseByName(strings.TrimSpace(n))
		if !ok {
			var names []string
			for _, c := range allCases {
				names = append(names, c.name)
			}
			return nil, fmt.Errorf("unknown case %q (cases: %s)", n, strings.Join(names, ", "))
		}
		cases = append(cases, c)
	}
	return cases, nil
}

func cmdRun(args []string) error {
	rf := newRunFlags("run")
	rf.fl.Parse(args)
	work, builderBin, repeat, casesFlag, out, table, base, arm64, verbose := rf.work, rf.builder, rf.repeat, rf.cases, rf.out, rf.table, rf.base, rf.arm64, rf.verbose
	if *work == "" || *builderBin == "" || *repeat < 1 {
		usage()
	}
	start := time.Now()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	b := &bench{work: *work, builder: *builderBin, self: self, log: os.Stderr, verbose: *verbose}
	cases, err := selectCases(*casesFlag)
	if err != nil {
		return err
	}
	var pod *podSection
	if *rf.pod != "" {
		if pod, err = readPod(*rf.pod); err != nil {
			return err
		}
		if len(pod.Order) == 0 {
			pod = nil // no pod case selected
		}
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(b.log, "[%5.0fs] "+format+"\n", append([]any{time.Since(start).Seconds()}, a...)...)
	}

	feat := b.probe()
	buildahVersion, _ := b.run("buildah", "--version")
	logf("builder %s (push: %v, bud --push: %v); %s", feat.version, feat.push, feat.budPush, strings.TrimSpace(buildahVersion))

	stop, err := b.startRegistry()
	if err != nil {
		logf("no local registry (%v): push and CI flow are n/a", err)
		feat.push, feat.budPush = false, false
	} else {
		defer stop()
		logf("registry on %s", b.registry)
	}

	// Inputs.
	ents, err := baseRootfs()
	if err != nil {
		return err
	}
	baseLayout := filepath.Join(b.work, "base-oci")
	if err := writeBaseLayout(ents, baseLayout); err != nil {
		return err
	}
	lower := filepath.Join(b.work, "base-rootfs")
	os.RemoveAll(lower)
	if err := writeRootfsDir(ents, lower); err != nil {
		return err
	}
	from := "oci:" + baseLayout + ":latest"
	tlsFlag := false
	switch *base {
	case "oci":
	case "registry":
		if b.registry == "" || !feat.budTLS {
			return fmt.Errorf("--base registry needs the local registry and builder bud --tls-verify (registry pull)")
		}
		ref := b.registry + "/bench/base:latest"
		if _, err := b.run("skopeo", "copy", "-q", "--dest-tls-verify=false", "oci:"+baseLayout+":latest", "docker://"+ref); err != nil {
			return err
		}
		from, tlsFlag = ref, true
	default:
		return fmt.Errorf("--base %q: want oci or registry", *base)
	}
	// The multi-platform base (an index of an amd64 and an arm64 image),
	// when a case needs it.
	multiFrom := ""
	if slices.ContainsFunc(cases, func(c benchCase) bool { return c.platforms != nil }) {
		if *arm64 == "" {
			return fmt.Errorf("multi-platform cases need --arm64-busybox (bench/run.sh passes the one hack/foreign.sh extracts)")
		}
		if err := checkBinfmt(); err != nil {
			return err
		}
		multiLayout := filepath.Join(b.work, "base-multi-oci")
		if err := writeMultiBase(multiLayout, *arm64); err != nil {
			return err
		}
		multiFrom = "oci:" + multiLayout + ":latest"
		if *base == "registry" {
			ref := b.registry + "/bench/base-multi:latest"
			if _, err := b.run("skopeo", "copy", "-q", "--all", "--dest-tls-verify=false", multiFrom, "docker://"+ref); err != nil {
				return err
			}
			multiFrom = ref
		}
	}
	ctxDir := func(c benchCase) string { return filepath.Join(b.work, "ctx", c.name) }
	for _, c := range cases {
		f := from
		if c.platforms != nil {
			f = multiFrom
		}
		if err := genContext(c, ctxDir(c), f); err != nil {
			return fmt.Errorf("generate %s: %w", c.name, err)
		}
	}
	if multiFrom != "" {
		logf("contexts generated; base image %s, multi-platform base %s", from, multiFrom)
	} else {
		logf("contexts generated; base image %s", from)
	}

	res := &results{
		Machine: machineInfo(),
		Config: map[string]any{
			"repeat": *repeat, "base": from, "base_source": *base, "builder_version": feat.version,
			"buildah_version": strings.TrimSpace(buildahVersion), "builder_push": feat.push,
			"builder_bud_push": feat.budPush, "multi_platform_base": multiFrom,
		},
		Cases: map[string]*caseResult{}, Acceptance: map[string]any{}, Pod: pod,
	}
	for _, c := range cases {
		res.Order = append(res.Order, c.name)
		res.Cases[c.name] = &caseResult{Desc: c.desc, Platforms: c.platforms, Tools: map[string]*toolResult{}}
	}

	// Floors.
	t0 := time.Now()
	n := max(*repeat, 3)
	if res.Sandbox, err = sandboxFloor(b.work, lower, max(20, n)); err != nil {
		return err
	}
	for _, c := range cases {
		f, err := measureContextFloors(ctxDir(c), n)
		if err != nil {
			return err
		}
		f.Runs, f.EditRuns = c.runs, c.editRuns
		if feat.hashContext {
			// What builder needs just to hash the context, reading every file.
			dir := ctxDir(c)
			if f.HashContext, err = timeN(n, func() error { _, err := b.run(b.builder, "cache", "hash-context", dir); return err }); err != nil {
				return err
			}
		}
		res.Cases[c.name].Floors = f
	}
	logf("floors: sandbox start %.3fs", res.Sandbox.Median)
	b.spent("floors", t0)

	tools := b.tools(feat, tlsFlag)

	// Timing: every repetition, every case, both tools (alternating which
	// goes first), a fresh store for each sequence. The first repetition
	// also checks correctness: each tool's image is exported to an OCI
	// layout (untimed) and the merged file trees are compared; a difference
	// stops the run before any timing is reported.
	for rep := 1; rep <= *repeat; rep++ {
		for _, c := range cases {
			order := tools
			if rep%2 == 0 {
				order = []tool{tools[1], tools[0]}
			}
			layouts := map[string]string{}
			for _, t := range order {
				tr := res.Cases[c.name].Tools[t.name]
				if tr == nil {
					tr = &toolResult{Measures: map[string][]measurement{}}
					res.Cases[c.name].Tools[t.name] = tr
				}
				export := ""
				if rep == 1 {
					export = filepath.Join(b.work, "export", c.name, t.name)
					layouts[t.name] = export
				}
				if err := b.sequence(t, c, ctxDir(c), rep, tr, export); err != nil {
					return err
				}
				logf("rep %d/%d %-11s %-7s cold %.2fs", rep, *repeat, c.name, t.name, tr.Measures["cold"][len(tr.Measures["cold"])-1].Wall)
			}
			if rep == 1 {
				t0 := time.Now()
				var err error
				if c.platforms != nil {
					res.Cases[c.name].Excluded, err = b.checkMulti(c, layouts, logf)
				} else {
					err = b.check(c, layouts, logf)
				}
				if err != nil {
					res.Acceptance["correctness"] = "FAILED: " + c.name
					writeJSON(*out, res)
					return err
				}
				if pc := pod.caseOf(c.name); pc != nil {
					// The pod's image against the host's (both builder's).
					b.checkPod(c, pc, layouts["builder"], logf)
				}
				if err := measureLayerFloor(&res.Cases[c.name].Floors, layouts["builder"], "latest", 1, c.platforms, n, b.work, b.registry); err != nil {
					return err
				}
				debug.FreeOSMemory() // the harness stays small while the tools run
				b.spent("check+layer floors", t0)
			}
		}
	}
	// The wiped variants last (see wipedSequence), each repetition after the
	// floor of the same state: creating the files right after a wipe.
	wipeFloors := map[string][]float64{}
	for rep := 1; rep <= *repeat; rep++ {
		for _, c := range cases {
			if !c.wiped {
				continue
			}
			sec, err := extractAfterWipe(filepath.Join(b.work, "export", c.name, "builder"), "latest", 1, filepath.Join(b.work, "stores"), func() error {
				// builder's store of this build, wiped as wipedSequence does
				s, err := b.newStore(fmt.Sprintf("floor-%s-%d-wipe", c.name, rep))
				if err != nil {
					return err
				}
				if _, err := b.run(tools[0].bud(s, "localhost/bench-"+c.name, ctxDir(c), c.budFlags[tools[0].name]...)...); err != nil {
					return err
				}
				return b.wipeStore(s)
			})
			if err != nil {
				return fmt.Errorf("%s: create after a wipe floor: %w", c.name, err)
			}
			wipeFloors[c.name] = append(wipeFloors[c.name], sec)
			res.Cases[c.name].Floors.ExtractAfterWipe = mkStat(wipeFloors[c.name])
			logf("rep %d/%d %-11s creating its files right after a wipe %.2fs", rep, *repeat, c.name, sec)
			order := tools
			if rep%2 == 0 {
				order = []tool{tools[1], tools[0]}
			}
			for _, t := range order {
				tr := res.Cases[c.name].Tools[t.name]
				if err := b.wipedSequence(t, c, ctxDir(c), rep, tr); err != nil {
					return err
				}
				logf("rep %d/%d %-11s %-7s cold after a wipe %.2fs", rep, *repeat, c.name, t.name, tr.Measures["cold_wiped"][len(tr.Measures["cold_wiped"])-1].Wall)
			}
		}
	}
	res.Acceptance["correctness"] = "same file tree from builder and buildah for every case"
	var excl []string
	for _, name := range res.Order {
		for _, e := range res.Cases[name].Excluded {
			excl = append(excl, name+" "+e.Platform+" "+e.Path)
		}
	}
	if len(excl) > 0 {
		res.Acceptance["correctness"] = fmt.Sprintf("same file tree from builder and buildah for every case (every platform) but %d file(s) buildah's cross-stage error changes (%s)", len(excl), strings.Join(excl, ", "))
		res.Acceptance["excluded_cross_stage"] = excl
	}
	res.WallSeconds = time.Since(start).Seconds()
	res.Machine["loadavg_end"] = loadavg()
	var ov []string
	for _, k := range slices.Sorted(maps.Keys(b.overhead)) {
		ov = append(ov, fmt.Sprintf("%s %.0f s", k, b.overhead[k]))
	}
	logf("done: %.0f s in timed commands, %.0f s in all (around them: %s)", b.timedSum, res.WallSeconds, strings.Join(ov, ", "))
	summarize(res)
	md := renderTable(res)
	fmt.Print(md)
	if *table != "" {
		os.WriteFile(*table, []byte(md), 0o644)
	}
	if err := writeJSON(*out, res); err != nil {
		return err
	}
	if ok, _ := res.Acceptance["ok"].(bool); !ok {
		fmt.Fprintln(b.log, "bench: an acceptance check failed (see above)")
	}
	return nil
}

// check compares the merged trees of the two tools' images of case c.
func (b *bench) check(c benchCase, layouts map[string]string, logf func(string, ...any)) error {
	ta, err := mergedTree(layouts["builder"], "latest")
	if err != nil {
		return fmt.Errorf("%s: builder's image: %w", c.name, err)
	}
	tb, err := mergedTree(layouts["buildah"], "latest")
	if err != nil {
		return fmt.Errorf("%s: buildah's image: %w", c.name, err)
	}
	d, tol := diffTrees(c.name, ta, tb)
	for _, l := range tol {
		logf("%s: tolerated difference %s", c.name, l)
	}
	if len(d) == 0 {
		logf("correct: %s (%d entries, same tree from both tools)", c.name, len(ta))
		return nil
	}
	fmt.Fprintf(b.log, "CORRECTNESS FAILURE: %s: builder's and buildah's images differ (%d differences):\n", c.name, len(d))
	for i, l := range d {
		if i == 40 {
			fmt.Fprintf(b.log, "  … %d more\n", len(d)-i)
			break
		}
		fmt.Fprintln(b.log, "  "+l)
	}
	return fmt.Errorf("correctness check failed for %s (layouts kept in %s): no timing reported", c.name, filepath.Dir(layouts["builder"]))
}

// sequence is one repetition of one case with one tool: cold build, push,
// (export, untimed, when export is set), warm rebuild, rebuild after touch,
// rebuild after edit; then the CI flow.
func (b *bench) sequence(t tool, c benchCase, ctxDir string, rep int, tr *toolResult, export string) error {
	name := fmt.Sprintf("%s-%s-%d", t.name, c.name, rep)
	s, err := b.newStore(name)
	if err != nil {
		return err
	}
	defer b.removeStore(s)
	tag := "localhost/bench-" + c.name
	add := func(k string, m measurement) { tr.Measures[k] = append(tr.Measures[k], m) }
	// A multi-platform case builds a manifest list named tag.
	bud := func() []string {
		if c.platforms != nil {
			return t.budList(s, tag, ctxDir, c.platforms)
		}
		return t.bud(s, tag, ctxDir, c.budFlags[t.name]...)
	}
	clearBlobInfoCache()
	cold, err := b.timed(bud()...)
	if err != nil {
		return err
	}
	add("cold", cold)
	tr.StoreCold = append(tr.StoreCold, b.du(s))
	if c.serial != nil && t.name == "builder" {
		// The same cold build with the stages one after the other.
		s2, err := b.newStore(name + "-serial")
		if err != nil {
			return err
		}
		m, err := b.timed(t.bud(s2, tag, ctxDir, append(slices.Clone(c.budFlags[t.name]), c.serial...)...)...)
		b.removeStore(s2)
		if err != nil {
			return err
		}
		add("cold_jobs1", m)
	}
	var push measurement
	if t.push != nil && b.registry != "" && c.platforms == nil {
		push, err = b.timed(t.push(s, tag, fmt.Sprintf("docker://%s/bench/%s-%s-%d", b.registry, c.name, t.name, rep))...)
		if err != nil {
			return err
		}
		add("push", push)
		// The same image to a new repository of the same registry: its
		// blobs are there already, so nothing should be compressed or sent.
		again, err := b.timed(t.push(s, tag, fmt.Sprintf("docker://%s/bench/%s-%s-%d-new", b.registry, c.name, t.name, rep))...)
		if err != nil {
			return err
		}
		add("push_new", again)
	}
	if export != "" {
		t0 := time.Now()
		// After the push: builder keeps the layers it compresses, and an
		// export before the push would hand the timed push that work.
		os.RemoveAll(export)
		os.MkdirAll(filepath.Dir(export), 0o755)
		argvs := t.export(s, tag, ctxDir, export)
		if c.platforms != nil {
			argvs = t.exportList(s, tag, ctxDir, export, c.platforms)
		}
		for _, argv := range argvs {
			if _, err := b.run(argv...); err != nil {
				return fmt.Errorf("export %s's image of %s: %w", t.name, c.name, err)
			}
		}
		b.spent("export", t0)
	}
	for _, k := range []string{"warm", "touch", "edit"} {
		e, err := newEditor(ctxDir, c)
		if err != nil {
			return err
		}
		switch k {
		case "touch":
			err = e.touch()
		case "edit":
			err = e.edit()
		}
		if err != nil {
			return err
		}
		m, err := b.timed(bud()...)
		if rerr := e.restore(); rerr != nil && err == nil {
			err = rerr
		}
		if err != nil {
			return err
		}
		add(k, m)
	}
	tr.StoreEnd = append(tr.StoreEnd, b.du(s))
	if c.platforms != nil {
		// Pushing a list is another command for each tool (buildah
		// manifest push --all): not timed here.
		tr.CIMode = "n/a (multi-platform case: build times only)"
		return nil
	}
	// The CI flow: a cold build followed by a push.
	switch {
	case t.ciPush != nil && b.registry != "":
		tr.CIMode = "bud --push (one command, fresh store)"
		s2, err := b.newStore(name + "-ci")
		if err != nil {
			return err
		}
		defer b.removeStore(s2)
		clearBlobInfoCache()
		m, err := b.timed(t.ciPush(s2, fmt.Sprintf("%s/bench/%s-%s-ci-%d", b.registry, c.name, t.name, rep), ctxDir)...)
		if err != nil {
			return err
		}
		add("ci", m)
	case t.push != nil && b.registry != "":
		tr.CIMode = "bud + push (cold build and push above, summed)"
		add("ci", measurement{
			Wall: cold.Wall + push.Wall, User: cold.User + push.User, Sys: cold.Sys + push.Sys,
			MaxRSSKiB: max(cold.MaxRSSKiB, push.MaxRSSKiB), WriteBytes: cold.WriteBytes + push.WriteBytes,
			ReadBytes: cold.ReadBytes + push.ReadBytes, WChar: cold.WChar + push.WChar,
		})
	default:
		tr.CIMode = "n/a (no push)"
	}
	if !c.zstdCI || b.registry == "" {
		return nil
	}
	// The CI flow again with zstd, into a new repository.
	ref := fmt.Sprintf("%s/bench/%s-%s-zstd-%d", b.registry, c.name, t.name, rep)
	switch {
	case t.ciPush != nil:
		s3, err := b.newStore(name + "-zstd")
		if err != nil {
			return err
		}
		defer b.removeStore(s3)
		m, err := b.timed(t.ciPush(s3, ref, ctxDir, "--compression", "zstd")...)
		if err != nil {
			return err
		}
		add("ci_zstd", m)
	case t.pushZstd != nil:
		zp, err := b.timed(t.pushZstd(s, tag, "docker://"+ref)...)
		if err != nil {
			return err
		}
		add("ci_zstd", measurement{
			Wall: cold.Wall + zp.Wall, User: cold.User + zp.User, Sys: cold.Sys + zp.Sys,
			MaxRSSKiB: max(cold.MaxRSSKiB, zp.MaxRSSKiB), WriteBytes: cold.WriteBytes + zp.WriteBytes,
			ReadBytes: cold.ReadBytes + zp.ReadBytes, WChar: cold.WChar + zp.WChar,
		})
	}
	return nil
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// loadavg is /proc/loadavg's 1, 5 and 15 minute figures: a busy machine
// makes a noisy run.
func loadavg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func machineInfo() map[string]any {
	m := map[string]any{"cores": runtime.NumCPU(), "date": time.Now().UTC().Format("2006-01-02T15:04Z"), "go": runtime.Version()}
	m["arch"] = runtime.GOARCH
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = strings.TrimSpace(string(data))
	}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.SplitN(string(data), "\n", 2)[0], "MemTotal: %d kB", &kb)
		m["memory_gib"] = float64(kb) / (1 << 20)
	}
	m["loadavg_start"] = loadavg()
	if data, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m["os"] = strings.Trim(v, `"`)
			}
		}
	}
	return m
}
