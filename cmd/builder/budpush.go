package main

// The registry side of bud: FROM pulls per --pull, compression at build
// time when the build pushes, and --push of every -t naming a registry.
// bud.go calls these; they hold no build logic.

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/builder-dev/builder/content"

	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/layer"
	"github.com/builder-dev/builder/pushers"
	"github.com/spf13/pflag"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/storage"
)

// budRegistryOptions are bud's registry flags.
type budRegistryOptions struct {
	reg        registryFlags
	comp       compressionFlags
	push       bool
	digestfile string
}

// addFlags registers --push, --digestfile, --compression,
// --compression-level and the shared registry flags on bud's flag set.
func (o *budRegistryOptions) addFlags(f *pflag.FlagSet) {
	o.reg.add(f, true, true)
	o.comp.add(f)
	f.BoolVar(&o.push, "push", false, "push the image to every -t that names a registry (REGISTRY/NAME[:TAG])")
	f.StringVar(&o.digestfile, "digestfile", "", "with --push, write the pushed manifest digest to this file")
}

// budRegistry is the registry state of one build.
type budRegistry struct {
	o    *budRegistryOptions
	env  *registryEnv
	comp pushers.Compression
	dest []string // docker:// destinations for --push
}

// setup validates the flags, then makes resolver pull plain names and
// docker:// bases into the store per the --pull policy (pull) with the
// registry flags, keeping compressed blobs in blobs for later pushes.
// progress receives pull progress (nil: none).
func (o *budRegistryOptions) setup(g *globalOptions, s storage.Store, blobs *content.Store, resolver *image.Resolver, pull string, tags []string, progress io.Writer) (*budRegistry, error) {
	policy, err := image.ParsePullPolicy(pull)
	if err != nil {
		return nil, usageError{fmt.Errorf("--pull: %w", err)}
	}
	comp, err := o.comp.compression()
	if err != nil {
		return nil, err
	}
	b := &budRegistry{o: o, comp: comp}
	if o.push {
		for _, t := range tags {
			if d, ok := registryDest(t); ok {
				b.dest = append(b.dest, d)
			}
		}
		if len(b.dest) == 0 {
			return nil, usagef("--push: no -t names a registry (want REGISTRY/NAME[:TAG], e.g. quay.io/team/app:v1)")
		}
	} else if o.digestfile != "" {
		return nil, usagef("--digestfile needs --push")
	}
	if b.env, err = o.reg.env(g, s, blobs); err != nil {
		return nil, err
	}
	resolver.Sys = b.env.sys
	resolver.Pull = policy
	resolver.Puller = b.env.puller(s, progress, g)
	if resolver.Log == nil {
		resolver.Log = g.log
	}
	return b, nil
}

// layerCompression is the compression of new layers: the --compression
// format when the build itself pushes, so each layer is compressed once,
// in the pass that writes it; otherwise cur (bud's own choice for its
// outputs; none for a build that ends in the store).
func (b *budRegistry) layerCompression(cur layer.Compression) layer.Compression {
	if len(b.dest) == 0 {
		return cur
	}
	return layer.Compression{Kind: b.comp.Kind, Level: b.comp.Level}
}

// eager starts streaming new layers to the first --push destination while
// they are written (see eager.go); nil when nothing is pushed.
func (b *budRegistry) eager(ctx context.Context, g *globalOptions) *eagerUploader {
	if len(b.dest) == 0 {
		return nil
	}
	return newEagerUploader(ctx, b.dest[0], b.env.sys, g.log)
}

// configure makes bud's other outputs (oci, docker-archive) reuse and
// record compressed layers, so no export compresses a layer twice.
func (b *budRegistry) configure(o *pushers.Options) {
	o.Sys = b.env.sys
	o.Variants = b.env.variants
	o.Compression = b.comp
	o.Retry = b.env.retry
}

// pushAll pushes img to every registry -t (with --push) in format and
// writes --digestfile (the digest of the last push: all are equal).
func (b *budRegistry) pushAll(ctx context.Context, img *image.Image, format image.Format, progress io.Writer) error {
	if len(b.dest) == 0 {
		return nil
	}
	opts := pushers.Options{Format: format, ReportWriter: progress}
	b.configure(&opts)
	var last string
	for _, d := range b.dest {
		if progress != nil {
			fmt.Fprintf(progress, "Pushing %s\n", strings.TrimPrefix(d, "docker://"))
		}
		dg, err := pushers.Push(ctx, img, d, opts)
		if err != nil {
			return err
		}
		last = dg.String()
	}
	if b.o.digestfile != "" {
		if err := writeFileAtomic(b.o.digestfile, []byte(last)); err != nil {
			return fmt.Errorf("--digestfile: %w", err)
		}
	}
	return nil
}

// registryDest returns docker://TAG if tag names a registry: its first
// component is a host (has a dot or a port) or "localhost:PORT". Plain
// names ("app", "localhost/app") are local, as podman stores them.
func registryDest(tag string) (string, bool) {
	named, err := reference.ParseNormalizedNamed(tag)
	if err != nil {
		return "", false
	}
	first, _, hasSlash := strings.Cut(tag, "/")
	if !hasSlash || !strings.ContainsAny(first, ".:") {
		return "", false
	}
	return "docker://" + reference.TagNameOnly(named).String(), true
}
