package build

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/builder-dev/builder/dockerfile"
	"github.com/builder-dev/builder/executor"
	"github.com/builder-dev/builder/executor/sandbox"
	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/images"
	"github.com/builder-dev/builder/layer"
	"github.com/builder-dev/builder/platform"
	"github.com/builder-dev/builder/pushers"
	"github.com/builder-dev/builder/snapshot"
	"github.com/docker/go-units"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage/pkg/ioutils"
)

// Run builds the image o describes (Prepare, then Build.Run with
// o.Store) and delivers it: the local store (when tagged or without other
// outputs), every Output, and with Push every tag that names a registry.
//
// Errors in o are *OptionError; a Dockerfile or step failure is *Failure;
// anything else is builder's or the machine's.
func Run(ctx context.Context, o Options) (*Result, error) {
	b, err := Prepare(o)
	if err != nil {
		return nil, err
	}
	return b.Run(ctx, o.Store)
}

// Build is a prepared build: options checked, Dockerfile read and planned
// for each platform.
type Build struct {
	o       Options
	format  image.Format
	file    *dockerfile.File
	ignore  *dockerfile.Ignore
	targets []target // one per platform; set by Run with AllPlatforms
}

// target is one platform of a build and its plan.
type target struct {
	plat platform.Platform
	plan *dockerfile.Plan
}

// Prepare checks o, reads the Dockerfile and its .dockerignore and plans
// the build for each platform: everything that needs no store, so that
// bad input is reported before anything is opened.
func Prepare(o Options) (*Build, error) {
	o.defaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	// The sandbox probe (a child process in namespaces of its own) runs
	// while the Dockerfile is read and the store opens; the build's gate
	// waits for it (session.openGate).
	go sandbox.Probe()
	b := &Build{o: o}
	var err error
	if b.format, err = images.ParseFormat(o.Format); err != nil {
		return nil, optionf("--format: %v", err)
	}
	if b.file, b.ignore, err = b.o.readFront(); err != nil {
		return nil, err
	}
	if o.AllPlatforms {
		// The platforms are the bases'; a host plan checks the Dockerfile
		// now and names the bases for Run.
		_, err := b.plan(platform.Host(), true)
		return b, err
	}
	plats := o.Platforms
	if len(plats) == 0 {
		plats = []platform.Platform{platform.Host()}
	}
	if err := b.planAll(plats); err != nil {
		return nil, err
	}
	return b, nil
}

// planAll plans the build for each of plats (warnings printed once).
func (b *Build) planAll(plats []platform.Platform) error {
	b.targets = nil
	for i, p := range plats {
		plan, err := b.plan(p, i == 0)
		if err != nil {
			return err
		}
		b.targets = append(b.targets, target{plat: p, plan: plan})
	}
	return nil
}

// plan plans the build for p and checks that every stage that runs
// something runs it for linux.
func (b *Build) plan(p platform.Platform, warn bool) (*dockerfile.Plan, error) {
	plan, err := b.file.Plan(dockerfile.PlanOptions{
		Target: b.o.Target, BuildArgs: b.o.BuildArgs, Platform: p, BuildPlatform: platform.Host(),
	})
	if err != nil {
		return nil, &Failure{err}
	}
	if warn {
		for _, w := range plan.Warnings {
			printWarning(b.o.ErrOut, w)
		}
		for _, a := range plan.UnusedArgs {
			fmt.Fprintf(b.o.ErrOut, "[Warning] one or more build args were not consumed: %s\n", a)
		}
	}
	for _, st := range plan.Stages {
		if at, ok := st.FirstRun(plan); ok && st.Platform.OS != "linux" {
			return nil, optionf("--platform %s: %s: RUN cannot run for %s: builder runs RUN steps for linux only", p, at, st.Platform)
		}
	}
	return plan, nil
}

// Run runs the prepared build with the local store st: one executor per
// platform, at most Options.Jobs at once, then the outputs.
func (b *Build) Run(ctx context.Context, st *images.Store) (*Result, error) {
	if st == nil {
		return nil, errors.New("build: no store")
	}
	// The store may still be opening (images.OpenBackground): the build
	// starts beside it, and a failed open ends the build at once, with the
	// open's error.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		if err := st.Wait(); err != nil {
			cancel(err)
		}
	}()
	res, err := b.run(ctx, st)
	if werr := st.Wait(); werr != nil {
		return nil, werr
	}
	return res, err
}

func (b *Build) run(ctx context.Context, st *images.Store) (*Result, error) {
	o := b.o
	o.Store = st
	if o.Log == nil {
		o.Log = st.Log()
	}
	start, out := time.Now(), o.Out
	view, err := newProgress(o.Progress, o.Out, o.multi())
	if err != nil {
		return nil, err
	}
	if view != nil {
		o.Out = view
		defer view.finish() // idempotent for the paths that end early
	}
	s, err := newSession(ctx, &o)
	if err != nil {
		return nil, err
	}
	defer s.close()
	if o.AllPlatforms {
		plats, err := b.basePlatforms(ctx, s)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(o.Out, "Platforms of every base: %s\n", platformList(plats))
		if err := b.planAll(plats); err != nil {
			return nil, err
		}
	}
	s.openGate(func() error { return b.preflight(s) })
	if storeless() {
		// The preflight's findings (a forced isolation that cannot work
		// here) come first, as they did before the gate.
		if err := s.gateFailed(); err != nil {
			return nil, err
		}
		if !o.Push && len(o.Outputs) == 0 {
			return nil, optionf("this environment has no user namespace, so the local store cannot hold the image: use --push (with -t REGISTRY/NAME) or --output")
		}
		if len(o.Tags) > 0 || o.Manifest != "" {
			fmt.Fprintf(o.ErrOut, "[Warning] the image is not kept in the local store (it cannot hold layers without a user namespace); it goes to --push and --output only\n")
		}
	}
	if view != nil {
		s.events = view.event
	}
	built, err := b.buildAll(ctx, s)
	if gerr := s.gateFailed(); gerr != nil {
		return nil, gerr // the stages' errors are its consequences
	}
	if err != nil {
		return nil, err
	}
	var res *Result
	if len(built) == 1 && !o.multi() {
		res, err = b.deliverOne(ctx, s, built[0])
	} else {
		res, err = b.deliverList(ctx, s, built)
	}
	if err != nil {
		return nil, err
	}
	if view != nil {
		view.finish()
	}
	if _, isJSON := view.(*jsonView); isJSON {
		b, _ := json.Marshal(map[string]any{"type": "build-end", "image": res.ImageID, "list": res.ListID,
			"duration_ns": time.Since(start), "time": time.Now().UTC().Format(time.RFC3339Nano)})
		out.Write(append(b, '\n'))
	} else {
		summary(out, built, res, time.Since(start))
	}
	return res, nil
}

// summary prints the build's last word: its time, steps and cache hits,
// and what it made.
func summary(w io.Writer, bs []*built, res *Result, d time.Duration) {
	steps, cached := 0, 0
	var size int64
	for _, bi := range bs {
		n, h := bi.ex.Steps()
		steps, cached = steps+n, cached+h
		for _, l := range bi.img.Layers {
			size += l.Descriptor().Size
		}
	}
	id := res.ImageID.Encoded()
	if res.ListID != "" {
		id = res.ListID
	}
	fmt.Fprintf(w, "Built in %.1fs: %d step(s), %d cached; %s %s, layers %s\n", d.Seconds(), steps, cached,
		map[bool]string{true: "manifest list", false: "image"}[len(bs) > 1], id[:min(12, len(id))], units.HumanSizeWithPrecision(float64(size), 3))
}

// basePlatforms are the platforms every base image of the build has (the
// bases of stages that follow the target platform; a FROM --platform
// stage does not).
func (b *Build) basePlatforms(ctx context.Context, s *session) ([]platform.Platform, error) {
	host, err := b.plan(platform.Host(), false)
	if err != nil {
		return nil, err
	}
	var common []platform.Platform
	seen := 0
	for _, st := range host.Stages {
		ref := st.Base.Image
		if st.Base.Stage >= 0 || st.Base.Platform != nil || strings.EqualFold(ref, "scratch") {
			continue
		}
		have, err := s.resolver.Platforms(ctx, ref)
		if err != nil {
			return nil, &Failure{&dockerfile.Error{Pos: st.At, Err: fmt.Errorf("FROM %s: listing its platforms: %w", ref, err)}}
		}
		if seen == 0 {
			common = slices.Clone(have)
		} else {
			common = slices.DeleteFunc(common, func(p platform.Platform) bool { return !slices.Contains(have, p) })
		}
		seen++
	}
	if seen == 0 {
		return nil, optionf("--all-platforms: the build has no base image to take platforms from (every stage is FROM scratch or FROM --platform)")
	}
	if len(common) == 0 {
		return nil, optionf("--all-platforms: the base images have no platform in common")
	}
	return common, nil
}

// preflight refuses, before any step runs, a build whose RUN steps cannot
// run here: no isolation is possible, or an emulator is not registered.
func (b *Build) preflight(s *session) error {
	warned := map[platform.Platform]bool{}
	for _, t := range b.targets {
		for _, st := range t.plan.Stages {
			at, ok := st.FirstRun(t.plan)
			if !ok {
				continue
			}
			if p := s.run.plan; p.Isolation == sandbox.IsolationNone {
				return &Failure{&dockerfile.Error{Pos: at, Err: fmt.Errorf("RUN cannot run here: %s. %s", p.Missing, noIsolationFix)}}
			}
			err := sandbox.CheckEmulation(b.o.BinfmtDir, st.Platform)
			var uv *sandbox.UnverifiableError
			if errors.As(err, &uv) {
				if !warned[st.Platform] {
					warned[st.Platform] = true
					fmt.Fprintf(b.o.ErrOut, "[Warning] %v\n", err)
				}
				continue
			}
			if err != nil {
				return &Failure{&dockerfile.Error{Pos: at, Err: err}}
			}
		}
	}
	return nil
}

// commitsToStore reports whether the build's image goes to the local
// store: it is named, or has no other output.
func (s *session) commitsToStore() bool {
	o := s.o
	return (len(o.Tags) > 0 || o.Manifest != "" || len(o.Outputs) == 0) && !storeless()
}

// built is one platform's image.
type built struct {
	plat      platform.Platform
	img       *image.Image
	ex        *executor.Executor
	id        digest.Digest
	committed bool // in the local store, unnamed
}

// trees is what the store commit may take the build's layer trees from:
// the overlay snapshot driver's layer store, unless ownership is only
// recorded beside the files (a single-id mapping), which the store's
// layers cannot carry.
func (s *session) trees() pushers.Trees {
	if s.run == nil || s.run.idNote != "" {
		return nil
	}
	g, ok := s.run.snapshots.(snapshot.TreeGiver)
	f, ok2 := s.run.snapshots.(snapshot.TreeFinder)
	if !ok || !ok2 {
		return nil
	}
	return trees{g, f}
}

// trees is a driver that gives its layer trees away, as the store commit
// takes them (pushers.Trees).
type trees struct {
	snapshot.TreeGiver
	f snapshot.TreeFinder
}

func (t trees) KeptSplit(d digest.Digest) (*layer.TarSplit, int64, bool) {
	p, meta, ok := t.f.Split(d)
	if !ok || meta == nil {
		return nil, 0, false
	}
	return &layer.TarSplit{Path: p, UIDs: meta.UIDs, GIDs: meta.GIDs, Owners: true}, meta.Size, true
}

// commitUnnamed writes bi's image to the local store under its ID only.
func (s *session) commitUnnamed(ctx context.Context, bi *built, format image.Format) error {
	cs, err := s.storeReady()
	if err != nil {
		return err
	}
	popts := pushers.Options{Store: cs, Format: format, Trees: s.trees()}
	s.reg.configure(&popts)
	popts.Sys = s.commitSys(popts.Sys)
	if _, err := pushers.Push(ctx, bi.img, "containers-storage:@"+bi.id.Encoded(), popts); err != nil {
		return fmt.Errorf("commit %s image to local store: %w", bi.plat, err)
	}
	return nil
}

// buildAll runs one executor per target, at most o.Jobs at once; the first
// failure cancels the others.
func (b *Build) buildAll(ctx context.Context, s *session) ([]*built, error) {
	o := s.o
	multi := len(b.targets) > 1
	jobs := o.Jobs
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	var flight *executor.Flight
	if multi {
		flight = &executor.Flight{}
	}
	// The images of a multi-platform build that ends in the store (named
	// by a list, or with no other output) go there one by one as they are
	// built.
	commit := o.multi() && s.commitsToStore()
	exs := make([]*executor.Executor, len(b.targets))
	for i, t := range b.targets {
		out, errOut := o.Out, o.ErrOut
		if multi {
			out, errOut = s.prefixed(o.Out, t.plat), s.prefixed(o.ErrOut, t.plat)
		}
		ex, err := s.executor(b.ignore, t.plat, out, errOut, flight)
		if err != nil {
			return nil, err
		}
		exs[i] = ex
	}
	// Cancelled by the first failure, and at the end of the session: the
	// executors' cache exports run on past Build in this context.
	ctx, cancel := context.WithCancel(ctx)
	s.onClose(cancel)
	res := make([]*built, len(b.targets))
	errs := make([]error, len(b.targets))
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	for i, t := range b.targets {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			img, err := exs[i].Build(ctx, t.plan, t.plat)
			<-sem // what follows is no build: let the next platform start
			if err != nil {
				if multi {
					err = fmt.Errorf("%s: %w", t.plat, err)
				}
				errs[i] = &Failure{err}
				cancel()
				return
			}
			applyConfig(img, o)
			_, cfg, err := img.Manifest(b.format)
			if err != nil {
				errs[i] = err
				cancel()
				return
			}
			bi := &built{plat: t.plat, img: img, ex: exs[i], id: digest.FromBytes(cfg)}
			if commit {
				// While the other platforms still build.
				if errs[i] = s.commitUnnamed(ctx, bi, b.format); errs[i] != nil {
					cancel()
					return
				}
				bi.committed = true
			}
			res[i] = bi
		})
	}
	wg.Wait()
	// The first failure is the cause; the others are its cancellations.
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return nil, err
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return res, nil
}

// deliverOne writes the image of a single-platform build: the local
// store, the outputs, --manifest, and the push beside them.
func (b *Build) deliverOne(ctx context.Context, s *session, bi *built) (*Result, error) {
	cs, err := s.storeReady()
	if err != nil {
		return nil, err
	}
	o := s.o
	res := &Result{ImageID: bi.id, Tags: o.Tags}
	popts := pushers.Options{Store: cs, Format: b.format, Trees: s.trees()}
	s.reg.configure(&popts)
	pushed, err := s.pushBeside(func() (digest.Digest, error) {
		return s.reg.pushAll(ctx, bi.img, b.format, o.Out)
	}, func() error {
		if err := s.writeOutputs(ctx, bi.ex, bi.img, res.ImageID, popts); err != nil || o.Manifest == "" || storeless() {
			return err
		}
		res.Images = []PlatformImage{{Platform: bi.plat, ImageID: bi.id}}
		var err error
		res.ListID, _, err = o.Store.PutList(o.Manifest, []images.ListImage{{ID: bi.id.Encoded(), Platform: bi.plat}}, true, b.format)
		return err
	})
	if err != nil {
		return nil, err
	}
	res.Pushed = pushed
	bi.ex.WaitExports(2 * time.Minute)
	if err := writeIID(o.IIDFile, res.ImageID); err != nil {
		return nil, err
	}
	return res, nil
}

// deliverList writes the images of a multi-platform build and the index
// that names them: a manifest list in the local store (named by the first
// -t, and --manifest), an OCI layout's index, and with --push the images
// and the index on every registry tag.
func (b *Build) deliverList(ctx context.Context, s *session, bs []*built) (*Result, error) {
	cs, err := s.storeReady()
	if err != nil {
		return nil, err
	}
	o := s.o
	entries := make([]pushers.ListEntry, len(bs))
	res := &Result{Tags: o.Tags}
	for i, bi := range bs {
		entries[i] = pushers.ListEntry{Image: bi.img, Platform: bi.plat}
		res.Images = append(res.Images, PlatformImage{Platform: bi.plat, ImageID: bi.id})
	}
	popts := pushers.Options{Store: cs, Format: b.format, Trees: s.trees()}
	s.reg.configure(&popts)
	pushed, err := s.pushBeside(func() (digest.Digest, error) {
		return s.reg.pushAllList(ctx, entries, b.format, o.Out)
	}, func() error {
		return s.writeListOutputs(ctx, bs, entries, popts, res)
	})
	if err != nil {
		return nil, err
	}
	res.Pushed = pushed
	if res.ImageID == "" {
		idx, _, err := pushers.Manifests(entries, b.format)
		if err != nil {
			return nil, err
		}
		res.ImageID = digest.FromBytes(idx)
	}
	for _, bi := range bs {
		bi.ex.WaitExports(2 * time.Minute)
	}
	if err := writeIID(o.IIDFile, res.ImageID); err != nil {
		return nil, err
	}
	return res, nil
}

// pushBeside runs the registry push while outputs writes the local store
// and the other outputs: the push reads only the built layers' blobs, so
// with --push the CI flow costs the longer of the two, not their sum.
func (s *session) pushBeside(push func() (digest.Digest, error), outputs func() error) (digest.Digest, error) {
	type pushed struct {
		d   digest.Digest
		err error
	}
	done := make(chan pushed, 1)
	go func() {
		if s.up != nil {
			s.up.wait() // blobs streamed during the build are in place: the push only checks them
		}
		d, err := push()
		done <- pushed{d, err}
	}()
	outErr := outputs()
	p := <-done
	return p.d, errors.Join(outErr, p.err)
}

// noIsolationFix says what lets RUN run where no isolation is possible.
const noIsolationFix = "In a Kubernetes pod, any of: a seccomp profile that allows unshare and mount " +
	"(securityContext.seccompProfile: Unconfined, or a Localhost profile), running as root with the default " +
	"capabilities (chroot), or a pod with its own user namespace (hostUsers: false); Dockerfiles without RUN " +
	"build as they are. `builder doctor` lists what this environment lacks"

// applyConfig applies --label, --unsetlabel, --env, --unsetenv and
// --annotation to the final image.
func applyConfig(img *image.Image, o *Options) {
	c := &img.Config.Config
	if len(o.Labels) > 0 || len(o.UnsetLabels) > 0 {
		l := maps.Clone(c.Labels)
		if l == nil {
			l = map[string]string{}
		}
		maps.Copy(l, o.Labels)
		for _, k := range o.UnsetLabels {
			delete(l, k)
		}
		c.Labels = l
	}
	if len(o.Env) > 0 || len(o.UnsetEnv) > 0 {
		env := slices.Clone(c.Env)
		for _, kv := range o.Env {
			k, _, _ := strings.Cut(kv, "=")
			env = slices.DeleteFunc(env, func(e string) bool { return strings.HasPrefix(e, k+"=") || e == k })
			env = append(env, kv)
		}
		for _, k := range o.UnsetEnv {
			env = slices.DeleteFunc(env, func(e string) bool { return strings.HasPrefix(e, k+"=") || e == k })
		}
		c.Env = env
	}
	if len(o.Annotations) > 0 {
		img.Annotations = maps.Clone(o.Annotations)
	}
}

func writeIID(file string, id digest.Digest) error {
	if file == "" {
		return nil
	}
	if err := ioutils.AtomicWriteFile(file, []byte(id.String()), 0o644); err != nil {
		return fmt.Errorf("--iidfile: %w", err)
	}
	return nil
}

func platformList(ps []platform.Platform) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// readFront reads and parses the Dockerfile and the .dockerignore that
// goes with it.
func (o *Options) readFront() (*dockerfile.File, *dockerfile.Ignore, error) {
	df, name, err := readDockerfile(o.Dockerfile, o.ContextDir, o.Stdin)
	if err != nil {
		return nil, nil, &OptionError{Err: err}
	}
	file, err := dockerfile.Parse(strings.NewReader(string(df)), name)
	if err != nil {
		return nil, nil, &Failure{err}
	}
	for _, w := range file.Warnings {
		printWarning(o.ErrOut, w)
	}
	ignore, err := LoadIgnore(o.Dockerfile, o.ContextDir)
	if err != nil {
		return nil, nil, &OptionError{Err: err}
	}
	return file, ignore, nil
}

// writeOutputs commits img to the local store (when tagged or when no
// --output is given) and writes every --output.
func (s *session) writeOutputs(ctx context.Context, ex *executor.Executor, img *image.Image, id digest.Digest, popts pushers.Options) error {
	o := s.o
	if (len(o.Tags) > 0 || len(o.Outputs) == 0) && !storeless() {
		dest := "containers-storage:@" + id.Encoded()
		if len(o.Tags) > 0 {
			dest = "containers-storage:" + o.Tags[0]
			popts.Tags = o.Tags[1:]
		}
		fmt.Fprintln(o.Out, strings.TrimSpace("COMMIT "+strings.Join(o.Tags, " ")))
		sys := popts.Sys
		popts.Sys = s.commitSys(sys)
		if _, err := pushers.Push(ctx, img, dest, popts); err != nil {
			return fmt.Errorf("commit to local store: %w", err)
		}
		popts.Tags, popts.Sys = nil, sys
	}
	for _, out := range o.Outputs {
		switch out.Type {
		case "oci":
			if _, err := pushers.Push(ctx, img, ociDest(out.Dest)+ociTag(o.Tags), popts); err != nil {
				return fmt.Errorf("--output type=oci: %w", err)
			}
		case "tar":
			if err := s.rootfsTar(ctx, ex, img, out.Dest); err != nil {
				return fmt.Errorf("--output type=tar: %w", err)
			}
		case "docker-archive":
			ref := ""
			if len(o.Tags) > 0 {
				ref = ":" + o.Tags[0]
			}
			// Written beside and renamed over the destination: an earlier
			// archive there is replaced (containers/image will not write
			// into one), and a failed write leaves no partial archive.
			tmp := filepath.Join(filepath.Dir(out.Dest), "."+filepath.Base(out.Dest)+".builder-tmp")
			os.Remove(tmp)
			_, err := pushers.Push(ctx, img, "docker-archive:"+tmp+ref, popts)
			if err == nil {
				err = os.Rename(tmp, out.Dest)
			}
			if err != nil {
				os.Remove(tmp)
				return fmt.Errorf("--output type=docker-archive: %w", err)
			}
		case "local":
			if err := ex.ExportRootfs(ctx, img, out.Dest); err != nil {
				return fmt.Errorf("--output type=local: %w", err)
			}
		}
	}
	return nil
}

// writeListOutputs commits each platform's image to the local store and
// names the list (-t, --manifest) when the build names anything or has no
// other output, then writes every --output.
func (s *session) writeListOutputs(ctx context.Context, bs []*built, entries []pushers.ListEntry, popts pushers.Options, res *Result) error {
	o := s.o
	if s.commitsToStore() {
		imgs := make([]images.ListImage, len(bs))
		errs := make([]error, len(bs))
		var wg sync.WaitGroup
		for i, bi := range bs {
			imgs[i] = images.ListImage{ID: bi.id.Encoded(), Platform: bi.plat}
			if !bi.committed {
				wg.Go(func() { errs[i] = s.commitUnnamed(ctx, bi, popts.Format) })
			}
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
		if len(o.Tags) > 0 {
			fmt.Fprintln(o.Out, "COMMIT "+strings.Join(o.Tags, " "))
			id, d, err := o.Store.PutList(o.Tags[0], imgs, false, popts.Format)
			if err != nil {
				return fmt.Errorf("naming the manifest list %s: %w", o.Tags[0], err)
			}
			if len(o.Tags) > 1 {
				if _, err := o.Store.Tag(id, o.Tags[1:]...); err != nil {
					return err
				}
			}
			res.ListID, res.ImageID = id, d
		}
		if o.Manifest != "" {
			id, d, err := o.Store.PutList(o.Manifest, imgs, true, popts.Format)
			if err != nil {
				return fmt.Errorf("--manifest %s: %w", o.Manifest, err)
			}
			if res.ListID == "" {
				res.ListID, res.ImageID = id, d
			}
		}
	}
	for _, out := range o.Outputs {
		switch out.Type {
		case "oci":
			if _, err := pushers.PushList(ctx, entries, ociDest(out.Dest)+ociTag(o.Tags), popts); err != nil {
				return fmt.Errorf("--output type=oci: %w", err)
			}
		case "local":
			// One tree per platform, as buildx lays them out.
			for _, bi := range bs {
				dir := filepath.Join(out.Dest, strings.ReplaceAll(bi.plat.String(), "/", "_"))
				if err := bi.ex.ExportRootfs(ctx, bi.img, dir); err != nil {
					return fmt.Errorf("--output type=local (%s): %w", bi.plat, err)
				}
			}
		default:
			return fmt.Errorf("--output type=%s holds one image, and this build makes one per platform", out.Type)
		}
	}
	return nil
}

// ociDest is the destination of --output type=oci: an OCI archive for a
// dest ending in .tar (as buildx writes one), else a layout directory.
func ociDest(dest string) string {
	if strings.HasSuffix(dest, ".tar") {
		return "oci-archive:" + dest
	}
	return "oci:" + dest
}

// rootfsTar writes the image's root file system as one tar (buildx's
// type=tar) to dest, "-" being o.Stdout: the layers extracted as
// --output type=local does, then archived.
func (s *session) rootfsTar(ctx context.Context, ex *executor.Executor, img *image.Image, dest string) error {
	dir, err := os.MkdirTemp(s.work, "rootfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := ex.ExportRootfs(ctx, img, dir); err != nil {
		return err
	}
	if dest == "-" {
		return snapshot.WriteTar(ctx, s.o.Stdout, dir, snapshot.WriteOptions{})
	}
	tmp := dest + ".builder-tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if err = snapshot.WriteTar(ctx, f, dir, snapshot.WriteOptions{}); err == nil {
		err = f.Close()
	} else {
		f.Close()
	}
	if err == nil {
		err = os.Rename(tmp, dest)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// ociTag gives the OCI layout tag for --output type=oci: the first -t's tag.
func ociTag(tags []string) string {
	if len(tags) == 0 {
		// Named all the same: a second build into the layout would
		// otherwise leave two unnamed images no reader can choose from.
		return ":latest"
	}
	t := tags[0]
	if i := strings.LastIndex(t, ":"); i > strings.LastIndex(t, "/") {
		return ":" + t[i+1:]
	}
	return ":latest"
}

// readDockerfile reads file (or CONTEXT/Dockerfile, then Containerfile;
// "-" is stdin).
func readDockerfile(file, contextDir string, stdin io.Reader) ([]byte, string, error) {
	if file == "-" {
		if stdin == nil {
			return nil, "", errors.New("-f -: no standard input")
		}
		data, err := io.ReadAll(io.LimitReader(stdin, dockerfile.MaxDockerfileSize+1))
		return data, "Dockerfile", err
	}
	if file == "" {
		for _, n := range []string{"Dockerfile", "Containerfile"} {
			p := filepath.Join(contextDir, n)
			if _, err := os.Stat(p); err == nil {
				file = p
				break
			}
		}
		if file == "" {
			return nil, "", fmt.Errorf("no Dockerfile or Containerfile in %s (use -f)", contextDir)
		}
	}
	// Parse refuses a file over the limit; no need to read more of it.
	f, err := os.Open(file)
	if err != nil {
		return nil, "", fmt.Errorf("read Dockerfile: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, dockerfile.MaxDockerfileSize+1))
	if err != nil {
		return nil, "", fmt.Errorf("read Dockerfile: %w", err)
	}
	return data, filepath.Base(file), nil
}

// LoadIgnore reads <Dockerfile>.dockerignore beside the Dockerfile, else
// CONTEXT/.dockerignore (or .containerignore); nil when there is none.
func LoadIgnore(dockerfilePath, contextDir string) (*dockerfile.Ignore, error) {
	var cands []string
	if dockerfilePath != "" && dockerfilePath != "-" {
		cands = append(cands, dockerfilePath+".dockerignore", dockerfilePath+".containerignore")
	}
	cands = append(cands, filepath.Join(contextDir, ".dockerignore"), filepath.Join(contextDir, ".containerignore"))
	for _, c := range cands {
		f, err := os.Open(c)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		pats, err := dockerfile.ReadIgnore(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c, err)
		}
		return dockerfile.NewIgnore(pats)
	}
	return nil, nil
}

// contextAbs is the context's absolute, symlink-free path: the name its
// file-hash index is kept under.
func contextAbs(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	return dir
}

func printWarning(w io.Writer, warn dockerfile.Warning) {
	rule := ""
	if warn.Rule != "" {
		rule = warn.Rule + ": "
	}
	fmt.Fprintf(w, "[Warning] %s: %s%s\n", warn.At, rule, warn.Msg)
}

// commitSys is sys for a copy into the local store, with containers/image's
// blob-info cache in memory only: what a store commit records there (the
// layers it found in the store, uncompressed) serves no later push, while
// the persistent cache's SQLite transactions (journal files made, synced
// and deleted) cost a commit 6-10 ms. Pushes keep the persistent cache.
func (s *session) commitSys(sys *types.SystemContext) *types.SystemContext {
	var c types.SystemContext
	if sys != nil {
		c = *sys
	}
	c.BlobInfoCacheDir = memoryOnlyCacheDir
	return &c
}

// memoryOnlyCacheDir cannot be made a directory (/dev/null is not one):
// containers/image then keeps its blob-info cache in memory (DefaultCache's
// documented fallback; copy.Image takes no cache of the caller's).
const memoryOnlyCacheDir = "/dev/null/builder-blob-info-cache"
