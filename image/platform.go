package image

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/builder-dev/builder/internal/store"
	"github.com/builder-dev/builder/platform"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	cimage "go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
)

// Mismatch is what Resolve does with an image of another platform than
// the one asked for.
type Mismatch int

const (
	MismatchError Mismatch = iota // refuse it (the default)
	MismatchWarn                  // use it, with a warning (--platform-mismatch=warn)
)

// ParseMismatch reads a --platform-mismatch value.
func ParseMismatch(s string) (Mismatch, error) {
	switch s {
	case "", "error":
		return MismatchError, nil
	case "warn":
		return MismatchWarn, nil
	}
	return 0, fmt.Errorf("unknown platform mismatch policy %q (want error or warn)", s)
}

// PlatformError says that an image has nothing for the platform a build
// asked for, and what it has.
type PlatformError struct {
	Image string // as the build named it
	Want  platform.Platform
	Have  []platform.Platform
	List  bool // Have are the instances of an index; else the image's own platform
}

func (e *PlatformError) Error() string {
	name := e.Image
	if name == "" {
		name = "the image"
	}
	have := make([]string, len(e.Have))
	for i, p := range e.Have {
		have[i] = p.String()
	}
	if !e.List {
		return fmt.Sprintf("%s is for %s, not %s (--platform-mismatch=warn uses it anyway)", name, strings.Join(have, ", "), e.Want)
	}
	if len(have) == 0 {
		return fmt.Sprintf("%s has no image for %s: its index names no platform", name, e.Want)
	}
	return fmt.Sprintf("%s has no image for %s; its index has %s", name, e.Want, strings.Join(have, ", "))
}

// listPlatforms are the platforms an index names.
func listPlatforms(l manifest.List) []platform.Platform {
	var out []platform.Platform
	for _, d := range l.Instances() {
		inst, err := l.Instance(d)
		if err != nil || inst.ReadOnly.Platform == nil {
			continue
		}
		out = append(out, platform.FromOCI(*inst.ReadOnly.Platform))
	}
	return out
}

// Platforms lists the platforms ref offers: those its index names (a
// manifest list of the local store, an OCI layout's or a registry's
// index), or a single image's own. Nothing is pulled.
func (r *Resolver) Platforms(ctx context.Context, ref string) ([]platform.Platform, error) {
	name, rest, hasPrefix := strings.Cut(ref, ":")
	var iref types.ImageReference
	switch {
	case !hasPrefix || !transports[name] || name == "containers-storage":
		local := ref
		if hasPrefix && name == "containers-storage" {
			local = rest
		}
		st, err := r.store()
		if err != nil {
			return nil, err
		}
		if st != nil {
			if m, err := store.Find(st, r.Sys, local); err == nil {
				if l, err := store.LoadList(st, m.Image.ID); err == nil {
					return l.Platforms(), nil
				}
				info, err := store.Inspect(st, m.Image.ID)
				if err != nil {
					return nil, err
				}
				return []platform.Platform{platform.FromOCI(info.Config.Platform)}, nil
			} else if name == "containers-storage" || !errors.Is(err, storage.ErrImageUnknown) || r.Puller == nil {
				return nil, err
			}
		}
		n, err := reference.ParseNormalizedNamed(local)
		if err != nil {
			return nil, fmt.Errorf("parsing image reference %q: %w", ref, err)
		}
		if iref, err = docker.NewReference(reference.TagNameOnly(n)); err != nil {
			return nil, err
		}
	default:
		var err error
		if iref, err = alltransports.ParseImageName(ref); err != nil {
			return nil, fmt.Errorf("parsing image reference %q: %w", ref, err)
		}
	}
	src, err := iref.NewImageSource(ctx, r.Sys)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", ref, err)
	}
	defer src.Close()
	man, mt, err := src.GetManifest(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: reading manifest: %w", ref, err)
	}
	if manifest.MIMETypeIsMultiImage(mt) {
		list, err := manifest.ListFromBlob(man, mt)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		return listPlatforms(list), nil
	}
	img, err := cimage.FromUnparsedImage(ctx, r.Sys, cimage.UnparsedInstance(src, nil))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	cfg, err := img.OCIConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: reading config: %w", ref, err)
	}
	return []platform.Platform{platform.FromOCI(cfg.Platform)}, nil
}
