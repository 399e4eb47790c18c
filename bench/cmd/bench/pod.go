package main

// The pod stand-in (the unprivileged CI pods issue): the pod cases
// (copy-big, run10) built inside builder's own image — hack/image.sh, built
// by bench/run.sh with the binary under test into root's store — run by
// root's podman as a non-root pod with the container runtime's default
// seccomp profile (podman's own, /usr/share/containers/seccomp.json: no
// --security-opt), as tests/pods_test.go runs it:
//
//	podman --runtime runc run --rm --network host --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --user 1000
//	  -v CTX:/ctx:ro -v BASE:BASE:ro -v STORE:/home/build/.local/share/containers IMAGE
//	  bud -q --network=host -t NAME /ctx
//
// STORE is a fresh empty directory owned by 1000:1000 on every run, mounted
// on the image's store volume, so each build is cold, like the host's
// builder cold build it is compared with; the flags after bud are the
// host's. bench pod runs as root (root's podman, root's store), before
// bench run, and writes its figures to a JSON file; bench run --pod reads
// it, checks the pod's image (first repetition, exported untimed) against
// builder's on the host, and reports the pod's times next to the host's.
//
// What is timed is podman run's wall time (raw). The container's own start
// and stop, the median of podman run … IMAGE version with the same mounts,
// is subtracted from every raw time (net): the issue compares builds, and
// net is what the acceptance (≤ 1.5x the host's cold build) uses.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const (
	podUID      = 1000                                  // the image's build user
	podStoreDir = "/home/build/.local/share/containers" // the image's store volume
	podLimit    = 1.5                                   // pod net / host cold build
)

// podSection is what bench pod measures, and (filled by bench run) the
// host's figures and the ratios.
type podSection struct {
	Image         string         `json:"image"`
	ImageID       string         `json:"image_id"`
	BuilderSHA256 string         `json:"builder_sha256"` // of the image's builder: the host's binary
	Command       string         `json:"podman_run"`     // the stand-in
	Seccomp       string         `json:"seccomp"`
	Base          string         `json:"base"`
	Info          map[string]any `json:"builder_info"` // builder info inside the stand-in (a subset)
	// Start is the container's own start and stop: podman run … IMAGE
	// version, same flags and mounts, a fresh store each time.
	Start       stat                `json:"container_start_s"`
	Order       []string            `json:"case_order"`
	Cases       map[string]*podCase `json:"cases"`
	Acceptance  string              `json:"acceptance_uses"`
	WallSeconds float64             `json:"wall_seconds"`
}

type podCase struct {
	// Raw is podman run … bud's wall time, seconds. (CPU, RSS and I/O are
	// not kept: the container's processes are conmon's children, not
	// podman's, so GNU time and /proc/self/io see only the podman client.)
	Raw   []float64 `json:"raw_wall_s"`
	Error string    `json:"error,omitempty"` // the build failed in the stand-in
	// Layout is the first repetition's image, pushed to an OCI layout
	// (untimed) for bench run's check against the host's image.
	Layout      string `json:"layout,omitempty"`
	Correctness string `json:"correctness,omitempty"`
	// Filled by bench run.
	RawStat  *stat    `json:"raw_s,omitempty"`
	Net      *stat    `json:"net_s,omitempty"`  // raw − Start.Median
	Host     *stat    `json:"host_s,omitempty"` // builder's cold build on the host (the main table's)
	RawRatio *float64 `json:"raw_over_host,omitempty"`
	NetRatio *float64 `json:"net_over_host,omitempty"`
}

func (p *podSection) caseOf(name string) *podCase {
	if p == nil {
		return nil
	}
	return p.Cases[name]
}

func readPod(path string) (*podSection, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pod stand-in results: %w", err)
	}
	var p podSection
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("pod stand-in results %s: %w", path, err)
	}
	if p.Cases == nil {
		p.Cases = map[string]*podCase{}
	}
	return &p, nil
}

// podRunner builds podman run command lines for the stand-in.
type podRunner struct {
	b      *bench
	image  string
	mounts []string // -v values every run gets (the base layout)
	n      int
}

func podFlags() []string {
	return []string{"--runtime", "runc", "run", "--rm", "--network", "host",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--user", fmt.Sprint(podUID)}
}

// argv is podman run with the stand-in's flags, p's mounts, the extra
// mounts and args for the image's entrypoint (builder).
func (p *podRunner) argv(mounts []string, args ...string) []string {
	a := append([]string{"podman"}, podFlags()...)
	for _, m := range append(slices.Clone(p.mounts), mounts...) {
		a = append(a, "-v", m)
	}
	return append(append(a, p.image), args...)
}

// freshDir is a new empty directory owned by the container's user.
func (p *podRunner) freshDir(kind, name string) (string, error) {
	p.n++
	// The parent readable by all: bench run (the bench user) reads the
	// exported images.
	if err := os.MkdirAll(filepath.Join(p.b.work, kind), 0o755); err != nil {
		return "", err
	}
	dir := filepath.Join(p.b.work, kind, fmt.Sprintf("%d-%s", p.n, name))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", err
	}
	return dir, os.Chown(dir, podUID, podUID)
}

// trash moves a used store aside; run.sh deletes the work directory when
// the bench ends (see removeStore for why not now).
func (p *podRunner) trash(dir string) {
	defer p.b.spent("rm", time.Now())
	t := filepath.Join(p.b.work, "trash")
	os.MkdirAll(t, 0o700)
	if err := os.Rename(dir, filepath.Join(t, filepath.Base(dir))); err != nil {
		fmt.Fprintln(p.b.log, "warning:", err)
	}
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// podInfo is the part of builder info (inside the stand-in) that says how
// it builds there.
func podInfo(out string) map[string]any {
	var all map[string]any
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		return map[string]any{"error": "builder info: " + err.Error()}
	}
	m := map[string]any{}
	for _, k := range []string{"Isolation", "Snapshotter", "Fallbacks", "Network"} {
		if v, ok := all[k]; ok {
			m[k] = v
		}
	}
	for _, sec := range []string{"Process", "Store"} {
		if s, ok := all[sec].(map[string]any); ok {
			for _, k := range []string{"Seccomp", "UserNS", "MappedIDs", "Driver"} {
				if v, ok := s[k]; ok {
					m[sec+"."+k] = v
				}
			}
		}
	}
	return m
}

// cmdPod times the pod cases in the stand-in (run as root).
func cmdPod(args []string) error {
	rf := newRunFlags("pod")
	rf.fl.Parse(args)
	if *rf.work == "" || *rf.builder == "" || *rf.image == "" || *rf.repeat < 1 {
		usage()
	}
	start := time.Now()
	cases, err := selectCases(*rf.cases)
	if err != nil {
		return err
	}
	cases = slices.DeleteFunc(slices.Clone(cases), func(c benchCase) bool { return !c.pod })
	res := &podSection{
		Image:      *rf.image,
		Command:    "podman " + strings.Join(podFlags(), " ") + " -v CTX:/ctx:ro -v BASE:BASE:ro -v STORE:" + podStoreDir + " IMAGE bud -q --network=host -t NAME /ctx",
		Seccomp:    "the container runtime's default (podman's, /usr/share/containers/seccomp.json)",
		Cases:      map[string]*podCase{},
		Acceptance: "net (raw − container start median) over the host's builder cold build median",
	}
	if len(cases) == 0 {
		return writeJSON(*rf.out, res)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("pod: run as root (root's podman runs the stand-in, from root's store; the container runs as uid %d)", podUID)
	}
	work, _ := filepath.Abs(*rf.work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	b := &bench{work: work, builder: *rf.builder, self: self, log: os.Stderr, verbose: *rf.verbose}
	logf := func(format string, a ...any) {
		fmt.Fprintf(b.log, "[pod %4.0fs] "+format+"\n", append([]any{time.Since(start).Seconds()}, a...)...)
	}
	p := &podRunner{b: b, image: *rf.image}

	// The image: in root's store, and holding the binary under test.
	out, err := b.run("podman", "image", "inspect", "--format", "{{.Id}}", p.image)
	if err != nil {
		return fmt.Errorf("the pod stand-in image (bench/run.sh builds it with hack/image.sh): %w", err)
	}
	res.ImageID = strings.TrimSpace(out)
	want, err := fileSHA256(*rf.builder)
	if err != nil {
		return err
	}
	a := append([]string{"podman"}, podFlags()...)
	out, err = b.run(append(a, "--entrypoint", "/bin/sha256sum", p.image, "/usr/local/bin/builder")...)
	if err != nil {
		return err
	}
	if f := strings.Fields(out); len(f) == 0 || f[0] != want {
		return fmt.Errorf("%s holds another builder (sha256 %q) than the one measured, %s (%s)", p.image, strings.TrimSpace(out), *rf.builder, want)
	}
	res.BuilderSHA256 = want

	// The base image and the contexts, as bench run writes them.
	ents, err := baseRootfs()
	if err != nil {
		return err
	}
	layout := filepath.Join(work, "base-oci")
	if err := writeBaseLayout(ents, layout); err != nil {
		return err
	}
	from := "oci:" + layout + ":latest"
	p.mounts = []string{layout + ":" + layout + ":ro"}
	var budExtra []string
	switch *rf.base {
	case "oci":
	case "registry":
		stop, err := b.startRegistry()
		if err != nil {
			return err
		}
		defer stop()
		ref := b.registry + "/bench/base:latest"
		if _, err := b.run("skopeo", "copy", "-q", "--dest-tls-verify=false", from, "docker://"+ref); err != nil {
			return err
		}
		from, p.mounts, budExtra = ref, nil, []string{"--tls-verify=false"}
	default:
		return fmt.Errorf("--base %q: want oci or registry", *rf.base)
	}
	res.Base = from
	ctxDir := func(c benchCase) string { return filepath.Join(work, "ctx", c.name) }
	for _, c := range cases {
		if err := genContext(c, ctxDir(c), from); err != nil {
			return fmt.Errorf("generate %s: %w", c.name, err)
		}
		res.Order = append(res.Order, c.name)
		res.Cases[c.name] = &podCase{}
	}

	// The container's own start and stop, with the same mounts: one
	// untimed run first (podman's first start after an image is built
	// does more), then the median of a few.
	version := func() (measurement, error) {
		store, err := p.freshDir("stores", "version")
		if err != nil {
			return measurement{}, err
		}
		defer p.trash(store)
		return b.timed(p.argv([]string{ctxDir(cases[0]) + ":/ctx:ro", store + ":" + podStoreDir}, "version")...)
	}
	if _, err := version(); err != nil {
		return fmt.Errorf("the pod stand-in does not start: %w", err)
	}
	var starts []float64
	for i := 0; i < max(5, *rf.repeat); i++ {
		m, err := version()
		if err != nil {
			return err
		}
		starts = append(starts, m.Wall)
	}
	res.Start = mkStat(starts)
	store, err := p.freshDir("stores", "info")
	if err != nil {
		return err
	}
	if out, err := b.run(p.argv([]string{store + ":" + podStoreDir}, "info")...); err != nil {
		res.Info = map[string]any{"error": tail(err.Error())}
	} else {
		res.Info = podInfo(out)
	}
	p.trash(store)
	logf("%s (%s): container start %.3fs median; builder inside: snapshots %v, isolation %v, seccomp %v, user namespace %v",
		p.image, res.ImageID[:min(12, len(res.ImageID))], res.Start.Median, res.Info["Snapshotter"], res.Info["Isolation"], res.Info["Process.Seccomp"], res.Info["Process.UserNS"])

	for rep := 1; rep <= *rf.repeat; rep++ {
		for _, c := range cases {
			pc := res.Cases[c.name]
			if pc.Error != "" {
				continue
			}
			store, err := p.freshDir("stores", c.name)
			if err != nil {
				return err
			}
			tag := "localhost/bench-" + c.name
			bud := append(append([]string{"bud", "-q", "--network=host"}, budExtra...), "-t", tag, "/ctx")
			m, err := b.timed(p.argv([]string{ctxDir(c) + ":/ctx:ro", store + ":" + podStoreDir}, bud...)...)
			if err != nil {
				pc.Error = tail(err.Error())
				logf("rep %d/%d %-8s FAILED in the stand-in: %v", rep, *rf.repeat, c.name, err)
				p.trash(store)
				continue
			}
			pc.Raw = append(pc.Raw, m.Wall)
			logf("rep %d/%d %-8s cold in the pod %.2fs (net %.2fs)", rep, *rf.repeat, c.name, m.Wall, m.Wall-res.Start.Median)
			if rep == 1 {
				// The image, for bench run's check against the host's.
				t0 := time.Now()
				if err := p.export(c, store, tag, pc); err != nil {
					pc.Correctness = "not checked: " + tail(err.Error())
					logf("%s: exporting the pod's image failed: %v", c.name, err)
				}
				b.spent("export", t0)
			}
			p.trash(store)
		}
	}
	res.WallSeconds = time.Since(start).Seconds()
	logf("done: %.0f s", res.WallSeconds)
	return writeJSON(*rf.out, res)
}

// export pushes the image tagged tag in store to an OCI layout, from inside
// the stand-in, and makes it readable to the bench user.
func (p *podRunner) export(c benchCase, store, tag string, pc *podCase) error {
	dir, err := p.freshDir("export", c.name)
	if err != nil {
		return err
	}
	if _, err := p.b.run(p.argv([]string{store + ":" + podStoreDir, dir + ":/out"}, "push", "-q", tag, "oci:/out/image:latest")...); err != nil {
		return err
	}
	if _, err := p.b.run("chmod", "-R", "a+rX", dir); err != nil {
		return err
	}
	pc.Layout = filepath.Join(dir, "image")
	return nil
}

// checkPod compares the pod's image of case c with builder's on the host
// (bench run, first repetition). A difference is reported (and fails the
// pod's acceptance); it does not stop the run.
func (b *bench) checkPod(c benchCase, pc *podCase, hostLayout string, logf func(string, ...any)) {
	if pc.Layout == "" || pc.Error != "" {
		return
	}
	ta, err := mergedTree(hostLayout, "latest")
	if err != nil {
		pc.Correctness = "not checked: builder's host image: " + err.Error()
		return
	}
	tp, err := mergedTree(pc.Layout, "latest")
	if err != nil {
		pc.Correctness = "not checked: the pod's image: " + err.Error()
		return
	}
	d, tol := diffTrees(c.name, ta, tp)
	for _, l := range tol {
		logf("%s (pod): tolerated difference %s", c.name, l)
	}
	if len(d) == 0 {
		pc.Correctness = "same tree as the host's"
		logf("correct: %s (pod) (%d entries, same tree as builder's on the host)", c.name, len(ta))
		return
	}
	pc.Correctness = fmt.Sprintf("DIFFERS from the host's (%d differences, first: %s)", len(d), d[0])
	fmt.Fprintf(b.log, "CORRECTNESS FAILURE (pod stand-in): %s: the pod's image differs from builder's on the host (%d differences; layouts %s, %s):\n", c.name, len(d), pc.Layout, hostLayout)
	for i, l := range d {
		if i == 40 {
			fmt.Fprintf(b.log, "  … %d more\n", len(d)-i)
			break
		}
		fmt.Fprintln(b.log, "  "+l)
	}
}

// summarizePod puts the host's cold builds next to the pod's, and the
// issue's acceptance: net ≤ 1.5x the host's, per case (reported, not part
// of "ok", like the other issues' figures).
func summarizePod(r *results) {
	p := r.Pod
	if p == nil || len(p.Order) == 0 {
		return
	}
	pass := true
	var notes []string
	ratios := map[string]float64{}
	for _, name := range p.Order {
		pc := p.Cases[name]
		if c := r.Cases[name]; c != nil {
			if h := c.Summary["cold"].Builder; h != nil {
				hs := *h
				pc.Host = &hs
			}
		}
		if len(pc.Raw) > 0 {
			var raw, net []float64
			for _, w := range pc.Raw {
				raw = append(raw, w)
				net = append(net, w-p.Start.Median)
			}
			rs, ns := mkStat(raw), mkStat(net)
			pc.RawStat, pc.Net = &rs, &ns
			if pc.Host != nil && pc.Host.Median > 0 {
				pc.RawRatio = ptr(rs.Median / pc.Host.Median)
				pc.NetRatio = ptr(ns.Median / pc.Host.Median)
			}
		}
		switch {
		case pc.Error != "":
			pass = false
			notes = append(notes, name+" failed in the stand-in")
		case pc.NetRatio == nil:
			pass = false
			notes = append(notes, name+" n/a")
		default:
			ratios[name] = *pc.NetRatio
			pass = pass && *pc.NetRatio <= podLimit
			note := fmt.Sprintf("%s %.2f", name, *pc.NetRatio)
			if strings.HasPrefix(pc.Correctness, "DIFFERS") {
				pass = false
				note += " (image differs from the host's)"
			}
			notes = append(notes, note)
		}
	}
	r.Acceptance["pod_net_over_host"] = ratios
	r.Acceptance["pod"] = strings.Join(notes, ", ")
	r.Acceptance["pod_le_1.5x_host"] = pass
}

// renderPod is the pod stand-in's table (after the main one).
func renderPod(b *strings.Builder, r *results) {
	p := r.Pod
	if p == nil || len(p.Order) == 0 {
		return
	}
	fmt.Fprintf(b, "\nPod stand-in: builder's own image (hack/image.sh, the same binary) run by root's podman as uid %d with podman's default seccomp profile, a fresh empty store volume each build: `%s`. Cold builds, min / median; the host column is builder's cold build above:\n\n", podUID, p.Command)
	fmt.Fprintf(b, "| case | pod, podman run (raw) s | pod, net of container start s | host, builder cold s | raw/host | net/host | pod's image |\n")
	fmt.Fprintf(b, "|---|---:|---:|---:|---:|---:|---|\n")
	for _, name := range p.Order {
		pc := p.Cases[name]
		img := pc.Correctness
		if pc.Error != "" {
			img = "build FAILED: " + strings.SplitN(strings.TrimSpace(pc.Error), "\n", 2)[0]
		}
		if img == "" {
			img = "not checked"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n", name, fmtStat(pc.RawStat, "s"), fmtStat(pc.Net, "s"),
			fmtStat(pc.Host, "s"), fmtRatio(pc.RawRatio), fmtRatio(pc.NetRatio), img)
	}
	fmt.Fprintf(b, "\nContainer start and stop (podman run … IMAGE version, same flags and mounts): %s s median, %s s min (%d runs); net = raw − that median. The acceptance (≤ %.1fx) uses net/host.",
		fmtNum(p.Start.Median, "s"), fmtNum(p.Start.Min, "s"), len(p.Start.Runs), podLimit)
	if len(p.Info) > 0 {
		var kv []string
		for _, k := range []string{"Snapshotter", "Isolation", "Store.Driver", "Process.UserNS", "Process.MappedIDs", "Process.Seccomp", "error"} {
			if v, ok := p.Info[k]; ok {
				kv = append(kv, fmt.Sprintf("%s %v", k, v))
			}
		}
		// Each fallback's first words (the JSON has them whole).
		if fb, ok := p.Info["Fallbacks"].([]any); ok && len(fb) > 0 {
			var short []string
			for _, f := range fb {
				s, _ := f.(string)
				s, _, _ = strings.Cut(s, " (")
				short = append(short, s)
			}
			kv = append(kv, "fallbacks: "+strings.Join(short, ", "))
		}
		fmt.Fprintf(b, " builder info inside: %s.", strings.Join(kv, "; "))
	}
	fmt.Fprintln(b)
}
