package main

import (
	"time"

	"github.com/builder-dev/builder/images"
	"github.com/docker/go-units"
	"github.com/spf13/pflag"
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
	stall      time.Duration
	maxLayer   string
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
		f.IntVar(&r.retry, "retry", images.DefaultRetry, "retries of a registry operation that failed for a transient reason")
		f.DurationVar(&r.retryDelay, "retry-delay", 0, "delay between retries (default: exponential backoff from 2s)")
		f.DurationVar(&r.stall, "stall-timeout", images.DefaultStallTimeout, "abandon and retry a transfer that moves no byte for this long")
		f.StringVar(&r.maxLayer, "max-layer-size", units.BytesSize(float64(images.DefaultMaxLayerSize)), "refuse a layer larger than this uncompressed (a gzip bomb fails fast)")
	}
}

func (r *registryFlags) options() (images.RegistryOptions, error) {
	o := images.RegistryOptions{
		CertDir: r.certDir, Creds: r.creds, AuthFile: r.authFile,
		Retry: r.retry, RetryDelay: r.retryDelay, StallTimeout: r.stall,
	}
	if r.maxLayer != "" {
		n, err := units.RAMInBytes(r.maxLayer)
		if err != nil || n <= 0 {
			return o, usagef("--max-layer-size %q: want a size such as 64GB", r.maxLayer)
		}
		o.MaxLayerSize = n
	}
	if r.flags != nil && r.flags.Changed("tls-verify") {
		v := r.tlsVerify
		o.TLSVerify = &v
	}
	return o, nil
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

// options: given explicitly, the format is forced on layers compressed
// otherwise; by default any compressed layer is kept.
func (c *compressionFlags) options() images.Compression {
	force := c.flags != nil && (c.flags.Changed("compression") || c.flags.Changed("compression-format"))
	return images.Compression{Format: c.kind, Level: c.level, Force: force}
}
