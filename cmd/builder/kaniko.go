package main

// `builder kaniko`: kaniko's executor command line, for CI jobs that move
// from kaniko (archived upstream) without rewriting their scripts. Each
// kaniko flag maps to a build option (docs/kaniko.md has the table); the
// ones that tune kaniko's own snapshotting are accepted and have nothing
// to do here; the ones builder cannot honour are refused by name.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/builder-dev/builder/build"
	"github.com/builder-dev/builder/images"
	"github.com/builder-dev/builder/platform"
	"github.com/spf13/cobra"
)

type kanikoOptions struct {
	context, contextSub, dockerfile string
	destinations, buildArgs, labels []string
	cache                           bool
	cacheRepo                       string
	cacheTTL                        time.Duration
	target                          string
	noPush, noPushCache             bool
	tarPath, digestFile, ociLayout  string
	nameWithDigest, nameTagDigest   string
	customPlatform                  string
	insecure, insecurePull          bool
	insecureRegistries              []string
	skipTLS, skipTLSPull            bool
	skipTLSRegistries               []string
	reproducible                    bool
	pushRetry, extractRetry         int
	verbosity                       string
	registryMirrors                 []string
	git                             string
	ignored                         map[string]*string
	ignoredBools                    map[string]*bool
}

func newKanikoCmd(g *globalOptions) *cobra.Command {
	o := &kanikoOptions{ignored: map[string]*string{}, ignoredBools: map[string]*bool{}}
	cmd := &cobra.Command{
		Use:   "kaniko [kaniko executor flags]",
		Short: "Build with kaniko's executor flags (--context, --dockerfile, --destination, ...)",
		Long: "Build as kaniko's executor does, with its flags: --context (a directory, or dir://DIR),\n" +
			"--dockerfile (relative to the context), --destination (repeatable; pushed unless --no-push),\n" +
			"--cache with --cache-repo (inferred from the first destination as kaniko does: REPO/cache),\n" +
			"--build-arg, --target, --tar-path, --digest-file, --oci-layout-path, --label, --reproducible,\n" +
			"--custom-platform, --insecure/--skip-tls-verify and their -pull/-registry forms. Flags that\n" +
			"tune kaniko's own snapshots (--snapshot-mode, --single-snapshot, --use-new-run, --cleanup,\n" +
			"--cache-copy-layers, ...) are accepted and change nothing: builder snapshots with overlay\n" +
			"and caches every step. docs/kaniko.md maps every kaniko flag.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bo, err := o.options(g)
			if err != nil {
				return err
			}
			res, err := runBuild(cmd, g, bo, false)
			if err != nil {
				return err
			}
			return o.writeNames(res)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.context, "context", "c", "/workspace/", "build context: a directory or dir://DIR")
	f.StringVar(&o.contextSub, "context-sub-path", "", "sub path within the context")
	f.StringVarP(&o.dockerfile, "dockerfile", "f", "Dockerfile", "Dockerfile, relative to the context unless absolute")
	f.StringArrayVarP(&o.destinations, "destination", "d", nil, "registry reference to push to (repeatable)")
	f.StringArrayVar(&o.buildArgs, "build-arg", nil, "build argument KEY=VALUE (repeatable)")
	f.StringArrayVar(&o.labels, "label", nil, "label KEY=VALUE on the image (repeatable)")
	f.BoolVar(&o.cache, "cache", false, "use and fill the registry cache (--cache-repo)")
	f.StringVar(&o.cacheRepo, "cache-repo", "", "registry repository of the cache (default: the first destination's repository + /cache)")
	f.DurationVar(&o.cacheTTL, "cache-ttl", 336*time.Hour, "ignore cache entries older than this")
	f.StringVar(&o.target, "target", "", "build up to this stage")
	f.BoolVar(&o.noPush, "no-push", false, "do not push the image")
	f.BoolVar(&o.noPushCache, "no-push-cache", false, "use the cache but do not push new entries to it")
	f.StringVar(&o.tarPath, "tar-path", "", "also write the image as a docker-archive tarball here")
	f.StringVar(&o.digestFile, "digest-file", "", "write the pushed image's digest here")
	f.StringVar(&o.ociLayout, "oci-layout-path", "", "also write the image as an OCI layout here")
	f.StringVar(&o.nameWithDigest, "image-name-with-digest-file", "", "write REPO@DIGEST of each destination here")
	f.StringVar(&o.nameTagDigest, "image-name-tag-with-digest-file", "", "write REPO:TAG@DIGEST of each destination here")
	f.StringVar(&o.customPlatform, "custom-platform", "", "target platform os/arch[/variant]")
	f.StringVar(&o.customPlatform, "customPlatform", "", "alias of --custom-platform")
	f.BoolVar(&o.insecure, "insecure", false, "push over plain HTTP or unverified TLS")
	f.BoolVar(&o.insecurePull, "insecure-pull", false, "pull over plain HTTP or unverified TLS")
	f.StringArrayVar(&o.insecureRegistries, "insecure-registry", nil, "registry reached insecurely (repeatable)")
	f.BoolVar(&o.skipTLS, "skip-tls-verify", false, "do not verify TLS certificates when pushing")
	f.BoolVar(&o.skipTLSPull, "skip-tls-verify-pull", false, "do not verify TLS certificates when pulling")
	f.StringArrayVar(&o.skipTLSRegistries, "skip-tls-verify-registry", nil, "registry whose certificate is not verified (repeatable)")
	f.BoolVar(&o.reproducible, "reproducible", false, "strip timestamps (created times 0, mtimes clamped)")
	f.IntVar(&o.pushRetry, "push-retry", 0, "retries of a push")
	f.IntVar(&o.extractRetry, "image-fs-extract-retry", 0, "retries of a base image pull")
	f.StringVarP(&o.verbosity, "verbosity", "v", "info", "log level: panic, fatal, error, warn, info, debug, trace")
	f.StringArrayVar(&o.registryMirrors, "registry-mirror", nil, "refused: configure mirrors in registries.conf")
	f.StringVar(&o.git, "git", "", "refused: check the repository out first and pass it as --context")
	// kaniko's own snapshot and filesystem tuning: accepted, nothing to do.
	for _, n := range []string{"snapshot-mode", "kaniko-dir", "cache-dir", "log-format", "ignore-path", "compression", "compression-level", "cache-run-layers-ttl"} {
		o.ignored[n] = f.String(n, "", "accepted for kaniko compatibility; no effect")
	}
	for _, n := range []string{"single-snapshot", "use-new-run", "cleanup", "cache-copy-layers", "cache-run-layers", "compressed-caching",
		"force", "ignore-var-run", "log-timestamp", "skip-unused-stages", "skip-default-registry-fallback", "push-ignore-immutable-tag-errors", "skip-push-permission-check"} {
		o.ignoredBools[n] = f.Bool(n, false, "accepted for kaniko compatibility; no effect")
	}
	return cmd
}

// options turns kaniko's flags into build.Options.
func (o *kanikoOptions) options(g *globalOptions) (build.Options, error) {
	if len(o.registryMirrors) > 0 {
		return build.Options{}, usagef("--registry-mirror: set mirrors in registries.conf ([[registry]] mirror = ...), which every pull reads")
	}
	if o.git != "" {
		return build.Options{}, usagef("--git: check the repository out first and pass its directory as --context")
	}
	ctx := strings.TrimPrefix(o.context, "dir://")
	if i := strings.Index(ctx, "://"); i >= 0 {
		return build.Options{}, usagef("--context %q: only local directories (DIR or dir://DIR) are supported; fetch %s contexts first", o.context, ctx[:i])
	}
	ctx = filepath.Join(ctx, o.contextSub)
	df := o.dockerfile
	if !filepath.IsAbs(df) {
		df = filepath.Join(ctx, df)
	}
	bo := build.Options{
		ContextDir: ctx, Dockerfile: df, Target: o.target, Tags: o.destinations,
		Push: !o.noPush && len(o.destinations) > 0, DigestFile: o.digestFile,
		Out: g.stdout, ErrOut: g.stderr, Log: g.log,
	}
	if o.noPush && o.digestFile != "" {
		bo.DigestFile = "" // kaniko writes nothing without a push
	}
	if o.verbosity != "info" {
		// kaniko's -v is builder's --log-level.
		g.logLevel = o.verbosity
		if err := g.setup(); err != nil {
			return build.Options{}, usagef("--verbosity %q: want panic, fatal, error, warn, info, debug or trace", o.verbosity)
		}
	}
	var err error
	if bo.BuildArgs, err = build.ReadBuildArgs(nil, o.buildArgs); err != nil {
		return bo, err
	}
	if bo.Labels, err = parseLabels(o.labels); err != nil {
		return bo, err
	}
	if o.customPlatform != "" {
		if bo.Platforms, err = platform.ParseList([]string{o.customPlatform}); err != nil {
			return bo, usagef("--custom-platform: %v", err)
		}
	}
	if o.reproducible {
		t := time.Unix(0, 0).UTC()
		bo.Timestamp = &t
	}
	if o.cache {
		repo := o.cacheRepo
		if repo == "" && len(o.destinations) > 0 {
			repo = cacheRepoFor(o.destinations[0])
		}
		if repo == "" {
			return bo, usagef("--cache needs --cache-repo or a --destination to infer it from")
		}
		bo.CacheFrom, bo.CacheTTL = []string{repo}, o.cacheTTL
		if !o.noPushCache {
			bo.CacheTo = repo
		}
	}
	if o.tarPath != "" {
		bo.Outputs = append(bo.Outputs, build.Output{Type: "docker-archive", Dest: o.tarPath})
	}
	if o.ociLayout != "" {
		bo.Outputs = append(bo.Outputs, build.Output{Type: "oci", Dest: o.ociLayout})
	}
	if len(bo.Outputs) == 0 && !bo.Push {
		// kaniko with --no-push and no tarball builds and throws the image
		// away; builder keeps it in the local store under its ID.
		bo.Tags = nil
	}
	if o.insecure || o.insecurePull || o.skipTLS || o.skipTLSPull || len(o.insecureRegistries) > 0 || len(o.skipTLSRegistries) > 0 {
		v := false
		bo.Registry.TLSVerify = &v
	}
	bo.Registry.Retry = images.DefaultRetry
	if n := max(o.pushRetry, o.extractRetry); n > 0 {
		bo.Registry.Retry = n
	}
	bo.Registry.StallTimeout = images.DefaultStallTimeout
	bo.Registry.MaxLayerSize = images.DefaultMaxLayerSize
	return bo, nil
}

// cacheRepoFor is kaniko's inferred cache repository: the destination's
// repository with /cache appended.
func cacheRepoFor(dest string) string {
	repo := dest
	if i := strings.LastIndex(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	return repo + "/cache"
}

// writeNames writes --image-name-with-digest-file and
// --image-name-tag-with-digest-file, one line per destination.
func (o *kanikoOptions) writeNames(res *build.Result) error {
	if res.Pushed == "" {
		return nil
	}
	for _, w := range []struct {
		file    string
		withTag bool
	}{{o.nameWithDigest, false}, {o.nameTagDigest, true}} {
		if w.file == "" {
			continue
		}
		var b strings.Builder
		for _, d := range o.destinations {
			name := d
			if !w.withTag {
				name = strings.TrimSuffix(cacheRepoFor(d), "/cache")
			}
			fmt.Fprintf(&b, "%s@%s\n", name, res.Pushed)
		}
		if err := os.WriteFile(w.file, []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("%s: %w", w.file, err)
		}
	}
	return nil
}
