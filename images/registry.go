package images

// Registries: the SystemContext every transfer uses (auth, TLS,
// registries.conf, a blob-info cache kept under the store), retries, and
// the compressed-variants index that makes each layer compressed once.

import (
	"context"
	"io"
	"log/slog"
	"strings"

	"github.com/builder-dev/builder/cache"
	"github.com/builder-dev/builder/compress"
	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/platform"
	"github.com/builder-dev/builder/registry"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/types"
)

// RegistryOptions are the registry flags shared by bud, push, pull and
// login: --tls-verify, --cert-dir, --creds, --authfile, --retry,
// --retry-delay.
type RegistryOptions = registry.Options

// Defaults of RegistryOptions: Retry (podman's), StallTimeout, MaxLayerSize.
const (
	DefaultRetry        = registry.DefaultRetry
	DefaultStallTimeout = registry.DefaultStallTimeout
	DefaultMaxLayerSize = registry.DefaultMaxLayerSize
)

// Registry is what talking to registries with this store needs.
type Registry struct {
	Sys      *types.SystemContext
	Retry    registry.Retrier
	Limits   registry.Limits
	Variants *registry.Variants
	store    *Store
}

// useBlobs holds the layer cache's shared lock while a push or pull uses
// the content store, so a concurrent prune waits instead of deleting a
// blob under it.
func (s *Store) useBlobs() (func(), error) {
	f, err := cache.SharedLock(s.Dir("cache"))
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}

// Registry prepares registry access for o.
func (s *Store) Registry(o RegistryOptions) (*Registry, error) {
	if o.Retry < 0 {
		return nil, Optionf("--retry must not be negative")
	}
	sys, err := o.SystemContext(nil, s.Dir("blobinfocache"))
	if err != nil {
		return nil, &OptionError{err}
	}
	registry.SkipUnreadableAuth(sys, s.log)
	blobs, err := s.Blobs()
	if err != nil {
		return nil, err
	}
	v, err := registry.OpenVariants(s.Dir("variants"), blobs)
	if err != nil {
		return nil, err
	}
	rt := o.Retrier()
	rt.Log = s.log
	return &Registry{Sys: sys, Retry: rt, Limits: o.Limits(), Variants: v, store: s}, nil
}

// Puller pulls into the store, reporting progress to w (nil: none). A
// store still opening in the background (OpenBackground) is waited for
// when a pull starts.
func (r *Registry) Puller(w io.Writer) image.Puller {
	return &storePuller{s: r.store, p: registry.Puller{Sys: r.Sys, Variants: r.Variants, Retry: r.Retry, Limits: r.Limits, Report: w, Log: r.store.log}}
}

type storePuller struct {
	s *Store
	p registry.Puller // without its Store until a pull
}

func (sp *storePuller) Pull(ctx context.Context, name string, plat platform.Platform) (string, error) {
	cs, err := sp.s.Opened()
	if err != nil {
		return "", err
	}
	p := sp.p
	p.Store = cs
	return p.Pull(ctx, name, plat)
}

func (sp *storePuller) Changed(ctx context.Context, name string, plat platform.Platform, local []digest.Digest) (bool, error) {
	return sp.p.Changed(ctx, name, plat, local)
}

// Compression is --compression and --compression-level.
type Compression struct {
	Format string // "gzip" (default) or "zstd"
	Level  int    // 0: the compressor's default
	// Force recompresses layers already compressed in another format
	// (--compression given explicitly); otherwise they are sent as they are.
	Force bool
}

// Kind parses c.Format.
func (c Compression) Kind() (compress.Kind, error) {
	switch strings.ToLower(c.Format) {
	case "gzip", "":
		return compress.Gzip, nil
	case "zstd":
		return compress.Zstd, nil
	}
	return compress.None, Optionf("--compression: unknown format %q (want gzip or zstd)", c.Format)
}

// ParseFormat parses a manifest format: "oci" or "docker".
func ParseFormat(s string) (image.Format, error) {
	f, err := image.ParseFormat(s)
	if err != nil {
		return f, &OptionError{err}
	}
	return f, nil
}

// Login checks the credentials against server and stores them in the auth
// file, as podman does.
func Login(ctx context.Context, o RegistryOptions, server, user, password string, log *slog.Logger) error {
	sys, err := o.SystemContext(nil, "")
	if err != nil {
		return &OptionError{err}
	}
	rt := o.Retrier()
	rt.Log = log
	_, err = registry.Login(ctx, sys, rt, server, user, password)
	return err
}

// Logout removes the stored credentials of server (or of every registry).
func Logout(o RegistryOptions, server string, all bool) error {
	sys, err := o.SystemContext(nil, "")
	if err != nil {
		return &OptionError{err}
	}
	return registry.Logout(sys, server, all)
}
