package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/builder-dev/builder/build"
	"github.com/builder-dev/builder/images"
	"github.com/builder-dev/builder/platform"
	"github.com/spf13/cobra"
)

type budOptions struct {
	tags          []string
	file          string
	target        string
	buildArgs     []string
	buildArgFiles []string
	platforms     []string
	labels        []string
	unsetLabels   []string
	envs          []string
	unsetEnv      []string
	annotations   []string
	logfile       string
	rm, forceRM   bool
	addHosts      []string
	noHosts       bool
	volumes       []string
	ulimits       []string
	shmSize       string
	capAdd        []string
	capDrop       []string
	ssh           []string
	buildContexts []string
	squash        bool
	progress      string
	allPlatforms  bool
	jobs          int
	manifest      string
	mismatch      string
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
	network       string
	allow         []string
	isolation     string
	runtime       string
	secrets       []string
	snapshotter   string
	reg           registryFlags
	comp          compressionFlags
	push          bool
	digestfile    string
}

func newBudCmd(g *globalOptions) *cobra.Command {
	o := &budOptions{}
	cmd := &cobra.Command{
		Use:     "bud [flags] [CONTEXT]",
		Aliases: []string{"build", "build-using-dockerfile"},
		Short:   "Build an image from a Dockerfile",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bo, err := o.options(g, cmd, args)
			if err != nil {
				return err
			}
			_, err = runBuild(cmd, g, bo, o.quiet)
			return err
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.tags, "tag", "t", nil, "name of the resulting image (repeatable)")
	f.StringVarP(&o.file, "file", "f", "", "Dockerfile path, or - for stdin (default CONTEXT/Dockerfile)")
	f.StringVar(&o.target, "target", "", "build up to this stage")
	f.StringArrayVar(&o.buildArgs, "build-arg", nil, "build argument KEY=VALUE, or KEY to take it from the environment")
	f.StringArrayVar(&o.buildArgFiles, "build-arg-file", nil, "file of KEY=VALUE build arguments")
	f.StringArrayVar(&o.platforms, "platform", nil, "target platforms os/arch[/variant], comma-separated or repeated; several make an image per platform and an index (default: this machine)")
	f.StringArrayVar(&o.labels, "label", nil, "set a label KEY=VALUE on the image (repeatable)")
	f.StringArrayVar(&o.unsetLabels, "unsetlabel", nil, "remove a label from the image, also one the base set (repeatable)")
	f.StringArrayVar(&o.envs, "env", nil, "set an environment variable KEY=VALUE in the image (repeatable; KEY alone takes it from the environment)")
	f.StringArrayVar(&o.unsetEnv, "unsetenv", nil, "remove an environment variable from the image (repeatable)")
	f.StringArrayVar(&o.annotations, "annotation", nil, "set an annotation KEY=VALUE on the image's OCI manifest (repeatable)")
	f.StringArrayVar(&o.addHosts, "add-host", nil, "add NAME:IP to /etc/hosts during RUN (repeatable)")
	f.BoolVar(&o.noHosts, "no-hosts", false, "leave the image's /etc/hosts alone during RUN")
	f.StringArrayVarP(&o.volumes, "volume", "v", nil, "bind HOST-DIR:CONTAINER-DIR[:ro] into every RUN (never into a layer; repeatable)")
	f.StringArrayVar(&o.ulimits, "ulimit", nil, "RUN resource limit NAME=SOFT[:HARD], e.g. nofile=1024:2048 (repeatable)")
	f.StringVar(&o.shmSize, "shm-size", "", "size of /dev/shm during RUN (default 64m)")
	f.StringArrayVar(&o.capAdd, "cap-add", nil, "add a capability to RUN steps (repeatable)")
	f.StringArrayVar(&o.capDrop, "cap-drop", nil, "drop a capability from RUN steps, or ALL (repeatable)")
	f.StringVar(&o.progress, "progress", "auto", "progress view: auto (tty on a terminal, else plain), plain, tty (live) or json (one event per line)")
	f.BoolVar(&o.squash, "squash", false, "merge the layers the build adds above its base image into one")
	f.StringArrayVar(&o.buildContexts, "build-context", nil, "extra named context NAME=DIR or NAME=docker-image://REF (oci-layout://DIR, oci:DIR, ...) for FROM NAME and COPY --from=NAME (repeatable)")
	f.StringArrayVar(&o.ssh, "ssh", nil, "forward an ssh agent to RUN --mount=type=ssh: default (the agent of $SSH_AUTH_SOCK) or ID=SOCKET (repeatable)")
	f.StringVar(&o.logfile, "logfile", "", "write the build's output to this file instead of the terminal")
	f.BoolVar(&o.rm, "rm", true, "accepted for buildah and docker compatibility: builder leaves no intermediate containers")
	f.BoolVar(&o.forceRM, "force-rm", false, "accepted for buildah and docker compatibility: builder leaves no intermediate containers")
	f.BoolVar(&o.allPlatforms, "all-platforms", false, "build for every platform all the base images have")
	f.IntVar(&o.jobs, "jobs", 0, "stages and platforms built at once: independent stages run concurrently (default: the number of CPUs; 1: one at a time, in order)")
	f.StringVar(&o.manifest, "manifest", "", "add the image(s) to this manifest list in local storage (created if missing)")
	f.StringVar(&o.mismatch, "platform-mismatch", "error", "a base image of another platform than asked for: error, or warn (and use it)")
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
	f.StringVar(&o.cacheTo, "cache-to", "", "registry repository (or oci:DIR) to store this build's cache entries in; REF,mounts=true also exports RUN cache mounts")
	f.BoolVar(&o.explainCache, "explain-cache", false, "for every cache miss, print the first input that differs from the nearest cached entry")
	f.StringVar(&o.pull, "pull", "missing", "pull policy: always, missing, never, newer (a bare --pull, as docker's, is always)")
	f.Lookup("pull").NoOptDefVal = "always"
	o.reg.add(f, true, true)
	o.comp.add(f)
	f.BoolVar(&o.push, "push", false, "push the image to every -t that names a registry (REGISTRY/NAME[:TAG])")
	f.StringVar(&o.digestfile, "digestfile", "", "with --push, write the pushed manifest digest to this file")
	f.StringVar(&o.network, "network", "private", "RUN network: private (own namespace with user-mode networking; host loopback unreachable), host (share the host's) or none")
	f.StringArrayVar(&o.allow, "allow", nil, "entitlement a Dockerfile may use: network.host (RUN --network=host), security.insecure (RUN --security=insecure)")
	f.StringVar(&o.isolation, "isolation", os.Getenv("BUILDER_ISOLATION"), "RUN isolation: rootless (user namespaces, default), chroot, or oci (with --runtime)")
	f.StringVar(&o.runtime, "runtime", "", "hand RUN steps to this OCI runtime (runc, crun) instead of the built-in sandbox")
	f.StringArrayVar(&o.secrets, "secret", nil, "secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR")
	f.StringVar(&o.snapshotter, "snapshotter", os.Getenv("BUILDER_SNAPSHOTTER"), "snapshot driver: overlay, fuse-overlayfs or copy (default: from --storage-driver, else the fastest that works)")
	return cmd
}

// options turns the flags into build.Options (Store is set by the caller).
func (o *budOptions) options(g *globalOptions, cmd *cobra.Command, args []string) (build.Options, error) {
	bo := build.Options{
		Dockerfile: o.file, Stdin: g.stdin, Target: o.target, Format: o.format, Tags: o.tags,
		IIDFile: o.iidfile, NoLayers: !o.layers, NoCache: o.noCache, CacheTTL: o.cacheTTL,
		PortableModes: o.portableModes, ExplainCache: o.explainCache, Stdout: g.stdout,
		Pull: o.pull, Push: o.push, DigestFile: o.digestfile, Compression: o.comp.options(),
		Network: o.network, Allow: o.allow, Isolation: o.isolation, Runtime: o.runtime, Snapshotter: o.snapshotter,
		Out: g.stdout, ErrOut: g.stderr, Log: g.log,
		AllPlatforms: o.allPlatforms, Jobs: o.jobs, Manifest: o.manifest, PlatformMismatch: o.mismatch,
		// Where the emulation preflight reads binfmt_misc handlers (tests).
		BinfmtDir: os.Getenv("BUILDER_BINFMT_MISC"),
	}
	if len(args) == 1 {
		bo.ContextDir = args[0]
	}
	var err error
	if bo.Registry, err = o.reg.options(); err != nil {
		return bo, err
	}
	if o.quiet {
		bo.Out = io.Discard
	}
	if o.cacheTo != "" {
		var err error
		if bo.CacheTo, bo.CacheToMounts, bo.CacheToMin, err = build.ParseCacheTo(o.cacheTo); err != nil {
			return bo, err
		}
	}
	if bo.Labels, err = parseLabels(o.labels); err != nil {
		return bo, err
	}
	if bo.Annotations, err = parseLabels(o.annotations); err != nil {
		return bo, err
	}
	bo.UnsetLabels, bo.UnsetEnv = o.unsetLabels, o.unsetEnv
	bo.AddHosts, bo.NoHosts, bo.Volumes, bo.Ulimits, bo.ShmSize = o.addHosts, o.noHosts, o.volumes, o.ulimits, o.shmSize
	bo.CapAdd, bo.CapDrop, bo.SSH, bo.BuildContexts, bo.Squash = o.capAdd, o.capDrop, o.ssh, o.buildContexts, o.squash
	bo.Progress = o.progress
	for _, e := range o.envs {
		k, _, hasValue := strings.Cut(e, "=")
		if k == "" {
			return bo, usagef("--env %q: empty name", e)
		}
		if !hasValue {
			e = k + "=" + os.Getenv(k)
		}
		bo.Env = append(bo.Env, e)
	}
	if o.logfile != "" {
		f, err := os.OpenFile(o.logfile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return bo, usagef("--logfile: %v", err)
		}
		// Closed when the process ends: the build writes to it until then.
		bo.Out, bo.ErrOut = f, f
	}
	if bo.Platforms, err = platform.ParseList(o.platforms); err != nil {
		return bo, usagef("--platform: %v", err)
	}
	if bo.BuildArgs, err = build.ReadBuildArgs(o.buildArgFiles, o.buildArgs); err != nil {
		return bo, err
	}
	if cmd.Flags().Changed("timestamp") {
		t := time.Unix(o.timestamp, 0).UTC()
		bo.Timestamp = &t
	} else if bo.Timestamp, err = build.SourceDateEpoch(); err != nil {
		return bo, err
	}
	for _, c := range o.cacheFrom {
		ref, err := build.ParseCacheFrom(c)
		if err != nil {
			return bo, err
		}
		bo.CacheFrom = append(bo.CacheFrom, ref)
	}
	for _, s := range o.outputs {
		out, err := build.ParseOutput(s)
		if err != nil {
			return bo, err
		}
		if out.Dest == "-" {
			// The archive owns stdout: progress goes to stderr.
			bo.Out = g.stderr
		}
		bo.Outputs = append(bo.Outputs, out)
	}
	bo.Secrets = map[string]build.Secret{}
	for _, s := range o.secrets {
		id, sec, err := build.ParseSecret(s)
		if err != nil {
			return bo, err
		}
		bo.Secrets[id] = sec
	}
	return bo, nil
}

// parseLabels reads --label KEY=VALUE values (KEY alone: an empty value).
func parseLabels(values []string) (map[string]string, error) {
	if len(values) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, v := range values {
		k, val, _ := strings.Cut(v, "=")
		if k == "" {
			return nil, usagef("--label %q: empty key", v)
		}
		out[k] = val
	}
	return out, nil
}

// runBuild prepares and runs bo, then prints what it made: a line per
// image and the tags unless quiet, and last the ID scripts take (the
// image's, or the manifest list's when the build made or added to one).
func runBuild(cmd *cobra.Command, g *globalOptions, bo build.Options, quiet bool) (*build.Result, error) {
	b, err := build.Prepare(bo)
	if err != nil {
		return nil, err
	}
	var res *build.Result
	err = g.withStoreBackground(func(s *images.Store) error {
		res, err = b.Run(cmd.Context(), s)
		return err
	})
	if err != nil {
		return nil, err
	}
	if bo.Progress == "json" {
		return res, nil // the stream's build-end event says what was made
	}
	if !quiet {
		for _, im := range res.Images {
			fmt.Fprintf(g.stdout, "--> %s %s\n", im.Platform, im.ImageID.Encoded()[:12])
		}
		if len(res.Images) == 0 {
			fmt.Fprintf(g.stdout, "--> %s\n", res.ImageID.Encoded()[:12])
		}
		for _, t := range res.Tags {
			fmt.Fprintf(g.stdout, "Successfully tagged %s\n", t)
		}
	}
	if res.ListID != "" {
		fmt.Fprintln(g.stdout, res.ListID)
	} else {
		fmt.Fprintln(g.stdout, res.ImageID.Encoded())
	}
	return res, nil
}
