package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/builder-dev/builder/content"
	"github.com/builder-dev/builder/platform"

	"github.com/builder-dev/builder/compress"
	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/internal/store"
	"github.com/builder-dev/builder/pushers"
	"github.com/builder-dev/builder/registry"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
)

// registryFlags are the registry flags shared by bud, push and pull (and,
// in part, login): one definition so they mean the same everywhere.
type registryFlags struct {
	flags      *pflag.FlagSet // to tell set flags from defaults
	tlsVerify  bool
	certDir    string
	creds      string
	authFile   string
	retry      int
	retryDelay time.Duration
}

// add registers the flags; creds and retry select the optional groups.
func (r *registryFlags) add(f *pflag.FlagSet, creds, retry bool) {
	r.flags = f
	f.BoolVar(&r.tlsVerify, "tls-verify", true, "require HTTPS and verify certificates (default: registries.conf's insecure setting)")
	f.StringVar(&r.certDir, "cert-dir", "", "directory of certificates (*.crt CAs, *.cert/*.key client pairs) for registries")
	f.StringVar(&r.authFile, "authfile", "", "auth file (default: $REGISTRY_AUTH_FILE, else ${XDG_RUNTIME_DIR}/containers/auth.json)")
	if creds {
		f.StringVar(&r.creds, "creds", "", "registry credentials USER:PASSWORD")
	}
	if retry {
		f.IntVar(&r.retry, "retry", registry.DefaultRetry, "retries of a registry operation that failed for a transient reason")
		f.DurationVar(&r.retryDelay, "retry-delay", 0, "delay between retries (default: exponential backoff from 2s)")
	}
}

func (r *registryFlags) options() registry.Options {
	o := registry.Options{
		CertDir: r.certDir, Creds: r.creds, AuthFile: r.authFile,
		Retry: r.retry, RetryDelay: r.retryDelay,
	}
	if r.flags != nil && r.flags.Changed("tls-verify") {
		v := r.tlsVerify
		o.TLSVerify = &v
	}
	return o
}

// registryEnv is what a command needs to talk to registries with the
// local store: the SystemContext (with the persistent blob-info cache
// under the store), the retry policy and the compressed-variants index.
type registryEnv struct {
	sys      *types.SystemContext
	retry    registry.Retrier
	variants *registry.Variants
}

// env builds the registryEnv for store s; blobs may be nil (it is opened).
func (r *registryFlags) env(g *globalOptions, s storage.Store, blobs *content.Store) (*registryEnv, error) {
	if r.retry < 0 {
		return nil, usagef("--retry must not be negative")
	}
	base := filepath.Join(s.GraphRoot(), "builder")
	sys, err := r.options().SystemContext(nil, filepath.Join(base, "blobinfocache"))
	if err != nil {
		return nil, usageError{err}
	}
	if blobs == nil {
		if blobs, err = content.OpenStore(filepath.Join(base, "blobs")); err != nil {
			return nil, err
		}
	}
	v, err := registry.OpenVariants(filepath.Join(base, "variants"), blobs)
	if err != nil {
		return nil, err
	}
	rt := r.options().Retrier()
	rt.Log = g.log
	return &registryEnv{sys: sys, retry: rt, variants: v}, nil
}

// compressionFlags are --compression and --compression-level.
type compressionFlags struct {
	flags *pflag.FlagSet
	kind  string
	level int
}

func (c *compressionFlags) add(f *pflag.FlagSet) {
	c.flags = f
	f.StringVar(&c.kind, "compression", "gzip", "layer compression for registries and OCI outputs: gzip or zstd")
	f.StringVar(&c.kind, "compression-format", "gzip", "alias of --compression")
	f.IntVar(&c.level, "compression-level", 0, "compression level (0: the compressor's default)")
	_ = f.MarkHidden("compression-format")
}

// compression parses the flags. Given explicitly, the format is forced on
// layers compressed otherwise; by default any compressed layer is kept.
func (c *compressionFlags) compression() (pushers.Compression, error) {
	var k compress.Kind
	switch strings.ToLower(c.kind) {
	case "gzip", "":
		k = compress.Gzip
	case "zstd":
		k = compress.Zstd
	default:
		return pushers.Compression{}, usagef("--compression: unknown format %q (want gzip or zstd)", c.kind)
	}
	force := c.flags != nil && (c.flags.Changed("compression") || c.flags.Changed("compression-format"))
	return pushers.Compression{Kind: k, Level: c.level, Force: force}, nil
}

type pushOptions struct {
	reg        registryFlags
	comp       compressionFlags
	format     string
	digestfile string
	quiet      bool
}

func newPushCmd(g *globalOptions) *cobra.Command {
	o := &pushOptions{}
	cmd := &cobra.Command{
		Use:   "push [flags] IMAGE [DESTINATION]",
		Short: "Push an image from local storage to a registry or another destination",
		Long: "Push IMAGE from local storage to DESTINATION: docker://REF (a registry; the default,\n" +
			"also for a DESTINATION without transport), oci:DIR[:TAG], oci-archive:FILE[:TAG],\n" +
			"docker-archive:FILE[:REF] or containers-storage:NAME. Without DESTINATION, IMAGE's name\n" +
			"is the registry reference. Each layer is compressed at most once in its life: the\n" +
			"compressed blob is kept in the store and reused by every later push.",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			dest := args[0]
			if len(args) == 2 {
				dest = args[1]
			}
			return g.withStore(func(s storage.Store) error { return o.run(cmd.Context(), g, s, args[0], dest) })
		},
	}
	f := cmd.Flags()
	o.reg.add(f, true, true)
	o.comp.add(f)
	f.StringVarP(&o.format, "format", "f", "", "manifest format: oci or docker (default: the image's own)")
	f.StringVar(&o.digestfile, "digestfile", "", "write the digest of the pushed manifest to this file")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "do not print progress")
	return cmd
}

func (o *pushOptions) run(ctx context.Context, g *globalOptions, s storage.Store, src, dest string) error {
	comp, err := o.comp.compression()
	if err != nil {
		return err
	}
	if t, _, ok := strings.Cut(src, ":"); ok && t != "containers-storage" && isTransport(t) {
		return usagef("push reads images from local storage; %q is not a local image name", src)
	}
	info, err := store.Inspect(s, strings.TrimPrefix(src, "containers-storage:"))
	if err != nil {
		return err
	}
	format := image.FormatOCI
	if info.ManifestType == manifest.DockerV2Schema2MediaType {
		format = image.FormatDocker
	}
	if o.format != "" {
		if format, err = image.ParseFormat(o.format); err != nil {
			return usageError{err}
		}
	}
	env, err := o.reg.env(g, s, nil)
	if err != nil {
		return err
	}
	r := &image.Resolver{Store: s, Sys: env.sys, Log: g.log, Pull: image.PullNever}
	defer r.Close()
	img, err := r.Resolve(ctx, info.ID, platform.FromOCI(info.Config.Platform))
	if err != nil {
		return err
	}
	if t, _, ok := strings.Cut(dest, ":"); !ok || !isTransport(t) {
		dest = "docker://" + dest
	}
	var progress io.Writer = g.stderr
	if o.quiet {
		progress = nil
	}
	d, err := pushers.Push(ctx, img, dest, pushers.Options{
		Store: s, Format: format, Sys: env.sys, ReportWriter: progress,
		Variants: env.variants, Compression: comp, Retry: env.retry,
	})
	if err != nil {
		return err
	}
	if o.digestfile != "" {
		if err := writeFileAtomic(o.digestfile, []byte(d.String())); err != nil {
			return fmt.Errorf("--digestfile: %w", err)
		}
	}
	return nil
}

// isTransport reports whether name is a transport prefix push and pull
// understand (so "host:5000/app" stays a name).
func isTransport(name string) bool {
	switch name {
	case "docker", "oci", "oci-archive", "docker-archive", "containers-storage", "dir":
		return true
	}
	return false
}
