package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/builder-dev/builder/compress"
	"github.com/builder-dev/builder/platform"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	storageTransport "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
)

// Puller copies images from registries into the local store, where their
// layers stay (so nothing is fetched twice: containers/image reuses layers
// the store already has, by compressed digest). With Variants set, the
// compressed blobs are kept too, so a later push of an image built on this
// one sends the registry's own blobs instead of compressing the layers anew.
type Puller struct {
	Store    storage.Store
	Sys      *types.SystemContext
	Variants *Variants // optional
	Retry    Retrier
	// Report receives containers/image's progress: bars on a TTY, one
	// line per blob otherwise. Nil discards it.
	Report io.Writer
	Log    *slog.Logger
	// Limits guard every blob pulled (stalls, layer size).
	Limits Limits
}

// Pull resolves name (a short name through registries.conf aliases and
// unqualified-search registries; "docker://" optional), copies the image
// for platform p into the store (for an index, only p's manifest, with its
// layers fetched in parallel) and returns the stored image's ID.
func (p *Puller) Pull(ctx context.Context, name string, plat platform.Platform) (string, error) {
	cands, err := p.candidates(name)
	if err != nil {
		return "", err
	}
	var errs []error
	for _, c := range cands {
		id, err := p.pullOne(ctx, c, plat)
		if err == nil {
			return id, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 1 {
		return "", errs[0]
	}
	return "", fmt.Errorf("pulling %s: %w", name, errors.Join(errs...))
}

// candidates lists the fully-qualified names to pull name from, in order,
// as podman does: a qualified name is itself; a short name is its
// registries.conf alias, else the name under each unqualified-search
// registry. Several candidates are an error in short-name-mode
// "enforcing" (podman would prompt; a build cannot), naming them so the
// user can pick one.
func (p *Puller) candidates(name string) ([]reference.Named, error) {
	if rest, ok := strings.CutPrefix(name, "docker://"); ok {
		named, err := reference.ParseNormalizedNamed(rest)
		if err != nil {
			return nil, fmt.Errorf("invalid image name %q: %w", name, err)
		}
		return []reference.Named{reference.TagNameOnly(named)}, nil
	}
	parsed, err := reference.Parse(name)
	if err != nil {
		return nil, fmt.Errorf("invalid image name %q: %w", name, err)
	}
	short, ok := parsed.(reference.Named)
	if !ok {
		return nil, fmt.Errorf("invalid image name %q: no repository", name)
	}
	if d := reference.Domain(short); strings.ContainsAny(d, ".:") || d == "localhost" {
		named, err := reference.ParseNormalizedNamed(name)
		if err != nil {
			return nil, fmt.Errorf("invalid image name %q: %w", name, err)
		}
		return []reference.Named{reference.TagNameOnly(named)}, nil
	}
	repo := reference.TrimNamed(short).String()
	alias, _, err := sysregistriesv2.ResolveShortNameAlias(p.Sys, repo)
	if err != nil {
		return nil, fmt.Errorf("resolving short name %q: %w", name, err)
	}
	if alias != nil {
		c, err := withTagOrDigest(alias, short)
		if err != nil {
			return nil, err
		}
		return []reference.Named{c}, nil
	}
	regs, origin, err := sysregistriesv2.UnqualifiedSearchRegistriesWithOrigin(p.Sys)
	if err != nil {
		return nil, err
	}
	if len(regs) == 0 {
		return nil, fmt.Errorf("short name %q: no alias and no unqualified-search registries in registries.conf; use a fully qualified name (REGISTRY/%s)", name, name)
	}
	var out []reference.Named
	var names []string
	for _, reg := range regs {
		named, err := reference.ParseNormalizedNamed(reg + "/" + name)
		if err != nil {
			return nil, fmt.Errorf("unqualified-search registry %q: %w", reg, err)
		}
		named = reference.TagNameOnly(named)
		out = append(out, named)
		names = append(names, named.String())
	}
	mode, err := sysregistriesv2.GetShortNameMode(p.Sys)
	if err != nil {
		return nil, err
	}
	if len(out) > 1 && mode == types.ShortNameModeEnforcing {
		return nil, fmt.Errorf("short name %q is ambiguous: it may mean %s (unqualified-search registries in %s, short-name-mode \"enforcing\"); use a fully qualified name or add an alias",
			name, strings.Join(names, ", "), origin)
	}
	if p.Log != nil {
		p.Log.Info("resolving short name through unqualified-search registries", "name", name, "candidates", strings.Join(names, ", "))
	}
	return out, nil
}

// withTagOrDigest gives repo the tag or digest of user (":latest" if none).
func withTagOrDigest(repo, user reference.Named) (reference.Named, error) {
	var err error
	if t, ok := user.(reference.Tagged); ok {
		if repo, err = reference.WithTag(repo, t.Tag()); err != nil {
			return nil, err
		}
	}
	if d, ok := user.(reference.Digested); ok {
		if repo, err = reference.WithDigest(repo, d.Digest()); err != nil {
			return nil, err
		}
	}
	return reference.TagNameOnly(repo), nil
}

// platformSys is p.Sys choosing plat in image indexes.
func (p *Puller) platformSys(plat platform.Platform) *types.SystemContext {
	var sys types.SystemContext
	if p.Sys != nil {
		sys = *p.Sys
	}
	sys.OSChoice, sys.ArchitectureChoice, sys.VariantChoice = plat.OS, plat.Architecture, plat.Variant
	return &sys
}

func (p *Puller) pullOne(ctx context.Context, named reference.Named, plat platform.Platform) (string, error) {
	srcRef, err := docker.NewReference(named)
	if err != nil {
		return "", err
	}
	dstRef, err := storageTransport.Transport.NewStoreReference(p.Store, named, "")
	if err != nil {
		return "", err
	}
	tee := teeRef{ImageReference: srcRef, limits: p.Limits}
	if p.Variants != nil {
		tee.blobs = p.Variants.Blobs
	}
	var src types.ImageReference = tee
	sys := p.platformSys(plat)
	op := Op{Verb: "pull", Registry: reference.Domain(named), Ref: named.String()}
	man, err := Copy(ctx, p.Retry, op, dstRef, src, copy.Options{
		SourceCtx:          sys,
		DestinationCtx:     sys,
		ReportWriter:       p.Report,
		ImageListSelection: copy.CopySystemImage,
	})
	if err != nil {
		return "", err
	}
	m, err := manifest.FromBlob(man, manifest.GuessMIMEType(man))
	if err != nil {
		return "", fmt.Errorf("pulled %s: %w", named, err)
	}
	id := m.ConfigInfo().Digest.Encoded()
	if _, err := p.Store.Image(id); err != nil {
		return "", fmt.Errorf("pulled %s: image %s not in the store: %w", named, id, err)
	}
	if p.Variants != nil {
		if err := p.recordVariants(id, m); err != nil && p.Log != nil {
			p.Log.Warn("could not record compressed layers", "image", named.String(), "error", err)
		}
	}
	return id, nil
}

// recordVariants notes each kept compressed layer blob under its diff ID.
func (p *Puller) recordVariants(id string, m manifest.Manifest) error {
	raw, err := p.Store.ImageBigData(id, m.ConfigInfo().Digest.String())
	if err != nil {
		return err
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return err
	}
	layers := m.LayerInfos()
	if len(layers) != len(cfg.RootFS.DiffIDs) {
		return fmt.Errorf("%d layers but %d diff IDs", len(layers), len(cfg.RootFS.DiffIDs))
	}
	var errs []error
	for i, l := range layers {
		if KindOf(l.MediaType) == compress.None {
			continue
		}
		if _, err := p.Variants.Blobs.Stat(l.Digest); err != nil {
			continue // reused from the store, never fetched: nothing kept
		}
		errs = append(errs, p.Variants.Record(cfg.RootFS.DiffIDs[i], ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size}))
	}
	return errors.Join(errs...)
}

// Changed reports whether the registry's manifest for name differs from
// every digest the local image carries (the --pull=newer test).
func (p *Puller) Changed(ctx context.Context, name string, plat platform.Platform, local []digest.Digest) (bool, error) {
	cands, err := p.candidates(name)
	if err != nil {
		return false, err
	}
	named := cands[0]
	ref, err := docker.NewReference(named)
	if err != nil {
		return false, err
	}
	var remote digest.Digest
	_, err = p.Retry.Do(ctx, "inspect "+named.String(), func(ctx context.Context) error {
		src, err := ref.NewImageSource(ctx, p.platformSys(plat))
		if err != nil {
			return err
		}
		defer src.Close()
		man, _, err := src.GetManifest(ctx, nil)
		if err != nil {
			return err
		}
		remote, err = manifest.Digest(man)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("checking %s (registry %s): %w", named, reference.Domain(named), err)
	}
	return !slices.Contains(local, remote), nil
}
