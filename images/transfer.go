package images

// Push and pull: a local image to any destination containers/image knows,
// a registry image into the store.

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/internal/store"
	"github.com/builder-dev/builder/platform"
	"github.com/builder-dev/builder/pushers"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/manifest"
)

// PushOptions configure Push.
type PushOptions struct {
	Registry    RegistryOptions
	Compression Compression
	// Format is the manifest format ("oci", "docker"); "" keeps the image's own.
	Format string
	// Progress receives containers/image progress; nil: none.
	Progress io.Writer
}

// Push copies the local image src to dest: docker://REF (the default for a
// dest without transport), oci:DIR[:TAG], oci-archive:FILE[:TAG],
// docker-archive:FILE[:REF] or containers-storage:NAME. Each layer is
// compressed at most once in its life (the compressed blob is kept).
// It returns the digest of the manifest written.
func (s *Store) Push(ctx context.Context, src, dest string, o PushOptions) (digest.Digest, error) {
	kind, err := o.Compression.Kind()
	if err != nil {
		return "", err
	}
	if t, _, ok := strings.Cut(src, ":"); ok && t != "containers-storage" && IsTransport(t) {
		return "", Optionf("push reads images from local storage; %q is not a local image name", src)
	}
	name := strings.TrimPrefix(src, "containers-storage:")
	if _, err := store.LoadList(s.st(), name); err == nil {
		// A list goes whole: its images, then the index, as podman does.
		return s.PushList(ctx, name, dest, PushListOptions{
			Registry: o.Registry, Compression: o.Compression, Format: o.Format, Progress: o.Progress,
		})
	}
	info, err := s.Inspect(name)
	if err != nil {
		return "", err
	}
	format := image.FormatOCI
	if info.ManifestType == manifest.DockerV2Schema2MediaType {
		format = image.FormatDocker
	}
	if o.Format != "" {
		if format, err = ParseFormat(o.Format); err != nil {
			return "", err
		}
	}
	reg, err := s.Registry(o.Registry)
	if err != nil {
		return "", err
	}
	release, err := s.useBlobs()
	if err != nil {
		return "", err
	}
	defer release()
	r := &image.Resolver{Store: s.st(), Sys: reg.Sys, Log: s.log, Pull: image.PullNever}
	defer r.Close()
	img, err := r.Resolve(ctx, info.ID, platform.FromOCI(info.Config.Platform))
	if err != nil {
		return "", err
	}
	if t, _, ok := strings.Cut(dest, ":"); !ok || !IsTransport(t) {
		dest = "docker://" + dest
	}
	return pushers.Push(ctx, img, dest, pushers.Options{
		Store: s.st(), Format: format, Sys: reg.Sys, ReportWriter: o.Progress,
		Variants: reg.Variants, Retry: reg.Retry,
		Compression: pushers.Compression{Kind: kind, Level: o.Compression.Level, Force: o.Compression.Force},
	})
}

// IsTransport reports whether name is a transport prefix push and pull
// understand (so "host:5000/app" stays a name).
func IsTransport(name string) bool {
	switch name {
	case "docker", "oci", "oci-archive", "docker-archive", "containers-storage", "dir":
		return true
	}
	return false
}

// PullOptions configure Pull.
type PullOptions struct {
	Registry RegistryOptions
	// Platform picks the manifest from an index (zero: this machine).
	Platform platform.Platform
	// Policy is the pull policy: always (default), missing, never, newer.
	Policy string
	// Progress receives containers/image progress; nil: none.
	Progress io.Writer
}

// Pull resolves name (short names through registries.conf) and copies the
// image for o.Platform into the store, unless the policy finds it there;
// it returns the image ID.
func (s *Store) Pull(ctx context.Context, name string, o PullOptions) (string, error) {
	if o.Policy == "" {
		o.Policy = "always"
	}
	policy, err := image.ParsePullPolicy(o.Policy)
	if err != nil {
		return "", &OptionError{fmt.Errorf("--policy: %w", err)}
	}
	reg, err := s.Registry(o.Registry)
	if err != nil {
		return "", err
	}
	release, err := s.useBlobs()
	if err != nil {
		return "", err
	}
	defer release()
	r := &image.Resolver{Store: s.st(), Sys: reg.Sys, Log: s.log, Pull: policy, Puller: reg.Puller(o.Progress)}
	defer r.Close()
	img, err := r.Resolve(ctx, name, o.Platform)
	if err != nil {
		return "", err
	}
	id, err := img.ID()
	if err != nil {
		return "", err
	}
	return id.Encoded(), nil
}
