package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/builder-dev/builder/content"
	"github.com/builder-dev/builder/platform"

	"github.com/builder-dev/builder/compress"
	"github.com/builder-dev/builder/dockerfile"
	"github.com/builder-dev/builder/executor"
	"github.com/builder-dev/builder/image"
	bstore "github.com/builder-dev/builder/internal/store"
	"github.com/builder-dev/builder/layer"
	"github.com/builder-dev/builder/pushers"
	"github.com/builder-dev/builder/snapshot"
	digest "github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
	"go.podman.io/storage"
)

type budOptions struct {
	tags          []string
	file          string
	target        string
	buildArgs     []string
	buildArgFiles []string
	platform      string
	format        string
	timestamp     int64
	outputs       []string
	iidfile       string
	quiet         bool
	layers        bool
	noCache       bool
	cacheTTL      time.Duration
	portableModes bool
	explainCache  bool
	cacheFrom     []string
	cacheTo       string
	pull          string
	timestampSet  bool
	network       string
	isolation     string
	runtime       string
	secrets       []string
	snapshotter   string
	registry      budRegistryOptions // --push, --compression, registry flags (budpush.go)
}

func newBudCmd(g *globalOptions) *cobra.Command {
	o := &budOptions{}
	cmd := &cobra.Command{
		Use:     "bud [flags] [CONTEXT]",
		Aliases: []string{"build", "build-using-dockerfile"},
		Short:   "Build an image from a Dockerfile",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			contextDir := "."
			if len(args) == 1 {
				contextDir = args[0]
			}
			o.timestampSet = cmd.Flags().Changed("timestamp")
			return o.run(cmd.Context(), g, contextDir)
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.tags, "tag", "t", nil, "name of the resulting image (repeatable)")
	f.StringVarP(&o.file, "file", "f", "", "Dockerfile path, or - for stdin (default CONTEXT/Dockerfile)")
	f.StringVar(&o.target, "target", "", "build up to this stage")
	f.StringArrayVar(&o.buildArgs, "build-arg", nil, "build argument KEY=VALUE, or KEY to take it from the environment")
	f.StringArrayVar(&o.buildArgFiles, "build-arg-file", nil, "file of KEY=VALUE build arguments")
	f.StringVar(&o.platform, "platform", "", "target platform os/arch[/variant] (default: this machine)")
	f.StringVar(&o.format, "format", "oci", "image format: oci or docker")
	f.Int64Var(&o.timestamp, "timestamp", 0, "seconds since the epoch to use for created times and as mtime ceiling (reproducible builds)")
	f.StringArrayVarP(&o.outputs, "output", "o", nil, "output: type=oci,dest=DIR | type=docker-archive,dest=FILE | type=local,dest=DIR")
	f.StringVar(&o.iidfile, "iidfile", "", "write the image ID to this file")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "print only the image ID")
	f.BoolVar(&o.layers, "layers", true, "use and fill the layer cache (false: neither)")
	f.BoolVar(&o.noCache, "no-cache", false, "do not use cached layers (the cache is still filled)")
	f.DurationVar(&o.cacheTTL, "cache-ttl", 0, "ignore cache entries older than this (e.g. 72h; 0: no limit)")
	f.BoolVar(&o.portableModes, "portable-modes", false, "give context files git's modes (0644, or 0755 when executable) in layers and cache keys")
	f.StringArrayVar(&o.cacheFrom, "cache-from", nil, "registry repository to find cached layers in after a local miss (repeatable)")
	f.StringVar(&o.cacheTo, "cache-to", "", "registry repository to store this build's cache entries in")
	f.BoolVar(&o.explainCache, "explain-cache", false, "for every cache miss, print the first input that differs from the nearest cached entry")
	f.StringVar(&o.pull, "pull", "missing", "pull policy: always, missing, never, newer")
	o.registry.addFlags(f)
	f.StringVar(&o.network, "network", "host", "RUN network: host or none")
	f.StringVar(&o.isolation, "isolation", os.Getenv("BUILDER_ISOLATION"), "RUN isolation: rootless (user namespaces, default), chroot, or oci (with --runtime)")
	f.StringVar(&o.runtime, "runtime", "", "hand RUN steps to this OCI runtime (runc, crun) instead of the built-in sandbox")
	f.StringArrayVar(&o.secrets, "secret", nil, "secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR")
	f.StringVar(&o.snapshotter, "snapshotter", os.Getenv("BUILDER_SNAPSHOTTER"), "snapshot driver: overlay, fuse-overlayfs or copy (default: from --storage-driver, else the fastest that works)")
	return cmd
}

// output is one parsed --output.
type output struct {
	kind string // oci | docker-archive | local
	dest string
}

func parseOutput(s string) (output, error) {
	var o output
	if !strings.Contains(s, "=") {
		return output{kind: "local", dest: s}, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch strings.TrimSpace(k) {
		case "type":
			o.kind = v
		case "dest":
			o.dest = v
		default:
			return o, fmt.Errorf("--output %q: unknown key %q", s, k)
		}
	}
	switch o.kind {
	case "oci", "docker-archive", "local", "tar":
	default:
		return o, fmt.Errorf("--output %q: unknown type %q (want oci, docker-archive or local)", s, o.kind)
	}
	if o.dest == "" {
		return o, fmt.Errorf("--output %q: dest= is required", s)
	}
	return o, nil
}

func (o *budOptions) run(ctx context.Context, g *globalOptions, contextDir string) error {
	var outs []output
	for _, s := range o.outputs {
		out, err := parseOutput(s)
		if err != nil {
			return usageError{err}
		}
		outs = append(outs, out)
	}
	var format image.Format
	switch o.format {
	case "oci", "":
		format = image.FormatOCI
	case "docker":
		format = image.FormatDocker
	default:
		return usagef("--format: unknown format %q (want oci or docker)", o.format)
	}
	plat, err := parsePlatform(o.platform)
	if err != nil {
		return usageError{err}
	}
	args, err := o.collectBuildArgs()
	if err != nil {
		return usageError{err}
	}
	clamp, err := o.clamp()
	if err != nil {
		return usageError{err}
	}
	if fi, err := os.Stat(contextDir); err != nil || !fi.IsDir() {
		return usagef("build context %q is not a directory", contextDir)
	}

	df, name, err := readDockerfile(o.file, contextDir, g.stdin)
	if err != nil {
		return usageError{err}
	}
	file, err := dockerfile.Parse(strings.NewReader(string(df)), name)
	if err != nil {
		return buildError{err}
	}
	for _, w := range file.Warnings {
		printWarning(g.stderr, w)
	}
	plan, err := file.Plan(dockerfile.PlanOptions{
		Target: o.target, BuildArgs: args, Platform: plat, BuildPlatform: platform.Host(),
	})
	if err != nil {
		return buildError{err}
	}
	for _, w := range plan.Warnings {
		printWarning(g.stderr, w)
	}
	for _, a := range plan.UnusedArgs {
		fmt.Fprintf(g.stderr, "[Warning] one or more build args were not consumed: %s\n", a)
	}
	ignore, err := loadIgnore(o.file, contextDir)
	if err != nil {
		return usageError{err}
	}

	store, err := g.openStore()
	if err != nil {
		return err
	}
	defer store.Shutdown(false)
	blobs, err := content.OpenStore(filepath.Join(store.GraphRoot(), "builder", "blobs"))
	if err != nil {
		return err
	}
	work, err := snapshot.NewScratchDir(filepath.Join(store.GraphRoot(), "builder", "tmp"), "build-", g.log)
	if err != nil {
		return err
	}
	var ex *executor.Executor
	defer func() {
		if ex == nil {
			os.RemoveAll(work) // the executor removes it once it exists
		}
	}()
	resolver := &image.Resolver{Store: store, Log: g.log}
	defer resolver.Close()
	progress := g.stdout
	if o.quiet {
		progress = io.Discard
	}
	reg, err := o.registry.setup(g, store, blobs, resolver, o.pull, o.tags, progress)
	if err != nil {
		return err
	}

	run, err := o.runConfig(g, store.GraphRoot(), work)
	if err != nil {
		return err
	}
	comp := layer.Compression{Kind: compress.None}
	for _, out := range outs {
		if out.kind == "oci" || out.kind == "docker-archive" {
			comp.Kind = compress.Gzip
		}
	}
	comp = reg.layerCompression(comp)
	if len(o.tags) > 0 || len(outs) == 0 {
		comp.RawDir = work // the store commit reads these instead of decompressing
	}
	up := reg.eager(ctx, g)
	if up != nil && comp.Kind != compress.None {
		comp.Follow = up.follow
		defer up.wait()
	}
	bc, err := o.openCache(g, store, blobs, reg, contextDir)
	if err != nil {
		return err
	}
	defer bc.close(g)
	ex, err = executor.New(executor.Config{
		CacheFrom: bc.from, CacheTo: bc.to,
		StoreLayer: func(d digest.Digest) (image.Layer, error) { return bstore.LayerByDiffID(store, d) },
		Cache:      bc.index, NoCache: o.noCache, CacheTTL: o.cacheTTL, FileHashes: bc.hashes,
		PortableModes: o.portableModes, ExplainCache: o.explainCache,
		Blobs: blobs, Resolver: resolver, WorkDir: work, Context: contextDir,
		Ignore: ignore, Compression: comp, Timestamp: clamp, Out: progress, ErrOut: g.stderr, Log: g.log,
		Snapshots: run.snapshots, Sandbox: run.sandbox, Network: o.network,
		Secrets: run.secrets, CacheMounts: filepath.Join(store.GraphRoot(), "builder", "cache-mounts"),
	})
	if err != nil {
		return err
	}
	defer ex.Close()

	img, err := ex.Build(ctx, plan, plat)
	if err != nil {
		return buildError{err}
	}
	_, cfgJSON, err := img.Manifest(format)
	if err != nil {
		return err
	}
	id := digestOf(cfgJSON)

	popts := pushers.Options{Store: store, Format: format}
	reg.configure(&popts)
	// The registry pushes read only the built layers' blobs, so they run
	// while the local store and the other outputs are written: with --push
	// the CI flow costs the longer of the two, not their sum.
	pushDone := make(chan error, 1)
	go func() {
		if up != nil {
			up.wait() // blobs streamed during the build are in place: the push only checks them
		}
		pushDone <- reg.pushAll(ctx, img, format, progress)
	}()
	outErr := o.writeOutputs(ctx, ex, img, id, outs, popts, progress)
	if err := errors.Join(outErr, <-pushDone); err != nil {
		return err
	}
	ex.WaitExports(2 * time.Minute)
	if !o.quiet {
		fmt.Fprintf(progress, "--> %s\n", id.Encoded()[:12])
		for _, t := range o.tags {
			fmt.Fprintf(progress, "Successfully tagged %s\n", t)
		}
	}
	fmt.Fprintln(g.stdout, id.Encoded())
	if o.iidfile != "" {
		if err := writeFileAtomic(o.iidfile, []byte(id.String())); err != nil {
			return fmt.Errorf("--iidfile: %w", err)
		}
	}
	return nil
}

// writeOutputs commits img to the local store (when tagged or when no
// --output is given) and writes every --output.
func (o *budOptions) writeOutputs(ctx context.Context, ex *executor.Executor, img *image.Image, id digest.Digest, outs []output, popts pushers.Options, progress io.Writer) error {
	if len(o.tags) > 0 || len(outs) == 0 {
		dest := "containers-storage:@" + id.Encoded()
		if len(o.tags) > 0 {
			dest = "containers-storage:" + o.tags[0]
			popts.Tags = o.tags[1:]
		}
		if !o.quiet {
			fmt.Fprintln(progress, strings.TrimSpace("COMMIT "+strings.Join(o.tags, " ")))
		}
		if _, err := pushers.Push(ctx, img, dest, popts); err != nil {
			return fmt.Errorf("commit to local store: %w", err)
		}
		popts.Tags = nil
	}
	for _, out := range outs {
		switch out.kind {
		case "oci":
			if _, err := pushers.Push(ctx, img, "oci:"+out.dest+ociTag(o.tags), popts); err != nil {
				return fmt.Errorf("--output type=oci: %w", err)
			}
		case "docker-archive", "tar":
			ref := ""
			if len(o.tags) > 0 {
				ref = ":" + o.tags[0]
			}
			if _, err := pushers.Push(ctx, img, "docker-archive:"+out.dest+ref, popts); err != nil {
				return fmt.Errorf("--output type=docker-archive: %w", err)
			}
		case "local":
			if err := ex.ExportRootfs(ctx, img, out.dest); err != nil {
				return fmt.Errorf("--output type=local: %w", err)
			}
		}
	}
	return nil
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

// ociTag gives the OCI layout tag for --output type=oci: the first -t's tag.
func ociTag(tags []string) string {
	if len(tags) == 0 {
		return ""
	}
	t := tags[0]
	if i := strings.LastIndex(t, ":"); i > strings.LastIndex(t, "/") {
		return ":" + t[i+1:]
	}
	return ":latest"
}

func (o *budOptions) clamp() (*time.Time, error) {
	if o.timestampSet {
		t := time.Unix(o.timestamp, 0).UTC()
		return &t, nil
	}
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("SOURCE_DATE_EPOCH=%q: not a number of seconds", v)
		}
		t := time.Unix(n, 0).UTC()
		return &t, nil
	}
	return nil, nil
}

func (o *budOptions) collectBuildArgs() (map[string]string, error) {
	args := map[string]string{}
	for _, f := range o.buildArgFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--build-arg-file: %w", err)
		}
		sc := bufio.NewScanner(strings.NewReader(string(data)))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				if ev, set := os.LookupEnv(line); set {
					args[line] = ev
				}
				continue
			}
			if k == "" {
				return nil, fmt.Errorf("--build-arg-file %s:%d: empty key", f, n)
			}
			args[k] = v
		}
	}
	for _, a := range o.buildArgs {
		k, v, ok := strings.Cut(a, "=")
		if k == "" {
			return nil, fmt.Errorf("--build-arg %q: empty key", a)
		}
		if !ok {
			ev, set := os.LookupEnv(k)
			if !set {
				continue
			}
			v = ev
		}
		args[k] = v
	}
	return args, nil
}

// readDockerfile reads -f (or CONTEXT/Dockerfile, then Containerfile).
func readDockerfile(file, contextDir string, stdin io.Reader) ([]byte, string, error) {
	if file == "-" {
		data, err := io.ReadAll(stdin)
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
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, "", fmt.Errorf("read Dockerfile: %w", err)
	}
	return data, filepath.Base(file), nil
}

// loadIgnore reads <Dockerfile>.dockerignore beside the Dockerfile, else
// CONTEXT/.dockerignore (or .containerignore).
func loadIgnore(file, contextDir string) (*dockerfile.Ignore, error) {
	var cands []string
	if file != "" && file != "-" {
		cands = append(cands, file+".dockerignore", file+".containerignore")
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

func parsePlatform(s string) (platform.Platform, error) {
	if s == "" {
		return platform.Host(), nil
	}
	return platform.Parse(s)
}

func mkdirp(dir string) string {
	os.MkdirAll(dir, 0o700)
	return dir
}

var _ = storage.Store(nil)

func printWarning(w io.Writer, warn dockerfile.Warning) {
	rule := ""
	if warn.Rule != "" {
		rule = warn.Rule + ": "
	}
	fmt.Fprintf(w, "[Warning] %s: %s%s\n", warn.At, rule, warn.Msg)
}
