package build

// The registry side of a build: FROM pulls per --pull, compression at
// build time when the build pushes, and --push of every tag naming a
// registry.

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/images"
	"github.com/builder-dev/builder/layer"
	"github.com/builder-dev/builder/pushers"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/storage/pkg/ioutils"
)

// budRegistry is the registry state of one build.
type budRegistry struct {
	o    *Options
	env  *images.Registry
	comp pushers.Compression
	dest []string // docker:// destinations for --push
}

// setupRegistry validates the registry options, then makes resolver pull
// plain names and docker:// bases into the store per the pull policy,
// keeping compressed blobs for later pushes.
func setupRegistry(o *Options, resolver *image.Resolver) (*budRegistry, error) {
	policy, err := image.ParsePullPolicy(o.Pull)
	if err != nil {
		return nil, optionf("--pull: %w", err)
	}
	kind, err := o.Compression.Kind()
	if err != nil {
		return nil, err
	}
	b := &budRegistry{o: o, comp: pushers.Compression{Kind: kind, Level: o.Compression.Level, Force: o.Compression.Force}}
	if o.Push {
		for _, t := range o.Tags {
			if d, ok := registryDest(t); ok {
				b.dest = append(b.dest, d)
			}
		}
		if len(b.dest) == 0 {
			return nil, optionf("--push: no -t names a registry (want REGISTRY/NAME[:TAG], e.g. quay.io/team/app:v1)")
		}
	}
	if b.env, err = o.Store.Registry(o.Registry); err != nil {
		return nil, err
	}
	resolver.Sys = b.env.Sys
	resolver.Pull = policy
	resolver.Puller = b.env.Puller(o.Out)
	if storeless() {
		resolver.Puller, resolver.Direct = nil, true
	}
	return b, nil
}

// layerCompression is the compression of new layers: the --compression
// format when the build itself pushes, so each layer is compressed once,
// in the pass that writes it; otherwise cur (the outputs' choice; none
// for a build that ends in the store).
func (b *budRegistry) layerCompression(cur layer.Compression) layer.Compression {
	if len(b.dest) == 0 {
		return cur
	}
	return layer.Compression{Kind: b.comp.Kind, Level: b.comp.Level}
}

// eager starts streaming new layers to the first --push destination while
// they are written (see eager.go); nil when nothing is pushed.
func (b *budRegistry) eager(ctx context.Context, o *Options) *eagerUploader {
	if len(b.dest) == 0 {
		return nil
	}
	return newEagerUploader(ctx, b.dest[0], b.env.Sys, o.Log)
}

// configure makes the build's other outputs (oci, docker-archive) reuse
// and record compressed layers, so no export compresses a layer twice.
func (b *budRegistry) configure(o *pushers.Options) {
	o.Sys = b.env.Sys
	o.Variants = b.env.Variants
	o.Compression = b.comp
	o.Retry = b.env.Retry
}

// pushAll pushes img to every registry tag (with --push) in format and
// writes --digestfile; it returns the pushed manifest's digest (all are
// equal).
func (b *budRegistry) pushAll(ctx context.Context, img *image.Image, format image.Format, progress io.Writer) (digest.Digest, error) {
	return b.pushEach(format, progress, "", func(dest string, opts pushers.Options) (digest.Digest, error) {
		return pushers.Push(ctx, img, dest, opts)
	})
}

// pushAllList is pushAll for a multi-platform build: the images, then the
// index naming them, whose digest --digestfile gets.
func (b *budRegistry) pushAllList(ctx context.Context, entries []pushers.ListEntry, format image.Format, progress io.Writer) (digest.Digest, error) {
	what := fmt.Sprintf(" (%d platforms and their index)", len(entries))
	return b.pushEach(format, progress, what, func(dest string, opts pushers.Options) (digest.Digest, error) {
		return pushers.PushList(ctx, entries, dest, opts)
	})
}

// pushEach runs push for every --push destination and writes the last
// digest to --digestfile.
func (b *budRegistry) pushEach(format image.Format, progress io.Writer, what string, push func(string, pushers.Options) (digest.Digest, error)) (digest.Digest, error) {
	if len(b.dest) == 0 {
		return "", nil
	}
	opts := pushers.Options{Format: format, ReportWriter: progress}
	b.configure(&opts)
	var last digest.Digest
	for _, d := range b.dest {
		fmt.Fprintf(progress, "Pushing %s%s\n", strings.TrimPrefix(d, "docker://"), what)
		dg, err := push(d, opts)
		if err != nil {
			return "", err
		}
		last = dg
	}
	if b.o.DigestFile != "" {
		if err := ioutils.AtomicWriteFile(b.o.DigestFile, []byte(last.String()), 0o644); err != nil {
			return "", fmt.Errorf("--digestfile: %w", err)
		}
	}
	return last, nil
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
