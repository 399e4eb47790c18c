package images

// Manifest lists in the local store: what `builder manifest` does, and
// how a multi-platform build names its images. Lists are kept as podman
// and buildah keep them (see internal/store), so each tool reads the
// others'.

import (
	"context"
	"io"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/internal/store"
	"github.com/builder-dev/builder/platform"
	"github.com/builder-dev/builder/pushers"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker/reference"
	cimage "go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"
)

// ManifestList is a manifest list of the local store.
type ManifestList = store.ManifestList

// ErrNotList is returned (wrapped) when a name is an image, not a list.
var ErrNotList = store.ErrNotList

// CreateListOptions configure CreateList.
type CreateListOptions struct {
	// Amend makes an existing list of that name the one added to, instead
	// of an error.
	Amend bool
	// Format is the list's type: "oci" (an OCI index, the default) or
	// "docker" (a Docker manifest list).
	Format string
	// Add are images added at once (as AddToList with All).
	Add []string
	// All adds every instance of an added image that is itself a list.
	All      bool
	Registry RegistryOptions
}

// CreateList makes an empty list named name (or, with Amend, opens the
// existing one) and adds o.Add; it returns the list's ID.
func (s *Store) CreateList(ctx context.Context, name string, o CreateListOptions) (string, error) {
	named, err := store.NormalizeName(name)
	if err != nil {
		return "", &OptionError{fmt.Errorf("list name %q: %w", name, err)}
	}
	mt := ocispec.MediaTypeImageIndex
	switch o.Format {
	case "", "oci":
	case "docker", "v2s2":
		mt = manifest.DockerV2ListMediaType
	default:
		return "", Optionf("--format: unknown list format %q (want oci or docker)", o.Format)
	}
	l, err := store.LoadList(s.s, named.String())
	switch {
	case err == nil && !o.Amend:
		return "", fmt.Errorf("a manifest list named %s already exists (ID %s): --amend adds to it", named, shortID(l.ID))
	case err == nil:
	case errors.Is(err, store.ErrNotList) && !o.Amend:
		// The name moves to the new list, as a new tag moves.
		l = store.NewList(mt)
	case errors.Is(err, store.ErrNotList):
		return "", fmt.Errorf("%s is an image, not a manifest list: %w", named, err)
	case errors.Is(err, ErrImageUnknown):
		l = store.NewList(mt)
	default:
		return "", err
	}
	for _, ref := range o.Add {
		if err := s.addTo(ctx, l, ref, AddOptions{All: o.All, Registry: o.Registry}); err != nil {
			return "", err
		}
	}
	return l.Save(s.s, named.String())
}

// LoadList reads the local list name.
func (s *Store) LoadList(name string) (*ManifestList, error) {
	return store.LoadList(s.s, name)
}

// AddOptions configure AddToList; the platform fields, when set, replace
// what the image's config says (as buildah's --os, --arch, ... do).
type AddOptions struct {
	All         bool // add every instance of an image that is a list
	OS, Arch    string
	Variant     string
	OSVersion   string
	OSFeatures  []string
	Features    []string
	Annotations map[string]string
	Registry    RegistryOptions
}

// AddToList adds ref (a local image, or any containers-transports
// reference such as docker://REF) to the list and returns the list's ID
// and the digest of the instance added (the first, with All).
func (s *Store) AddToList(ctx context.Context, list, ref string, o AddOptions) (string, digest.Digest, error) {
	l, err := store.LoadList(s.s, list)
	if err != nil {
		return "", "", err
	}
	n := len(l.Index.Manifests)
	if err := s.addTo(ctx, l, ref, o); err != nil {
		return "", "", err
	}
	added := ""
	if len(l.Index.Manifests) > n {
		added = l.Index.Manifests[n].Digest.String()
	}
	id, err := l.Save(s.s)
	if err != nil {
		return "", "", err
	}
	if added == "" { // an instance already there, replaced in place
		return id, "", nil
	}
	return id, digest.Digest(added), nil
}

// addTo adds ref's instances to l (not saved).
func (s *Store) addTo(ctx context.Context, l *ManifestList, ref string, o AddOptions) error {
	if t, rest, ok := strings.Cut(ref, ":"); !ok || !IsTransport(t) || t == "containers-storage" {
		name := ref
		if ok && t == "containers-storage" {
			name = rest
		}
		if m, err := store.Find(s.s, nil, name); err == nil {
			return s.addLocal(l, name, m.Image.ID, o)
		} else if ok || !errors.Is(err, ErrImageUnknown) {
			return err
		}
		ref = "docker://" + ref // not local: a registry reference, as buildah takes it
	}
	return s.addRemote(ctx, l, ref, o)
}

// addLocal adds the local image id (or, for a list, its instances: all
// with o.All, else the one for this machine).
func (s *Store) addLocal(l *ManifestList, name, id string, o AddOptions) error {
	if src, err := store.LoadList(s.s, id); err == nil {
		descs := src.Index.Manifests
		if !o.All {
			d, ok := src.Choose(platform.Host())
			if !ok {
				return fmt.Errorf("%s is a manifest list with no image for %s (--all adds every one)", name, platform.Host())
			}
			descs = []ocispec.Descriptor{d}
		}
		for _, d := range descs {
			l.Add(o.apply(d), src.Instances[d.Digest])
		}
		return nil
	}
	info, err := store.Inspect(s.s, id)
	if err != nil {
		return err
	}
	p := info.Config.Platform
	d := ocispec.Descriptor{
		MediaType: info.ManifestType, Digest: info.Digest, Size: int64(len(info.Manifest)), Platform: &p,
	}
	ref, err := store.LocalRef(s.s, info.ID)
	if err != nil {
		return err
	}
	l.Add(o.apply(d), ref)
	return nil
}

// addRemote adds an image read through containers/image: its manifest
// and config are read, no layer is fetched. The instance is recorded by
// digest, so a tag moved later cannot change what the list names.
func (s *Store) addRemote(ctx context.Context, l *ManifestList, ref string, o AddOptions) error {
	iref, err := alltransports.ParseImageName(ref)
	if err != nil {
		return &OptionError{fmt.Errorf("image reference %q: %w", ref, err)}
	}
	reg, err := s.Registry(o.Registry)
	if err != nil {
		return err
	}
	src, err := iref.NewImageSource(ctx, reg.Sys)
	if err != nil {
		return fmt.Errorf("reading %s: %w", ref, err)
	}
	defer src.Close()
	man, mt, err := src.GetManifest(ctx, nil)
	if err != nil {
		return fmt.Errorf("reading %s: %w", ref, err)
	}
	if !manifest.MIMETypeIsMultiImage(mt) {
		d, err := s.describe(ctx, src, man, mt, nil, reg.Sys)
		if err != nil {
			return fmt.Errorf("%s: %w", ref, err)
		}
		l.Add(o.apply(d), pinned(iref, d.Digest))
		return nil
	}
	list, err := manifest.ListFromBlob(man, mt)
	if err != nil {
		return fmt.Errorf("%s: %w", ref, err)
	}
	instances := list.Instances()
	if !o.All {
		want := platform.Host()
		if o.OS != "" || o.Arch != "" {
			want = platform.Normalize(platform.Platform{OS: o.OS, Architecture: o.Arch, Variant: o.Variant})
		}
		sys := *reg.Sys
		sys.OSChoice, sys.ArchitectureChoice, sys.VariantChoice = want.OS, want.Architecture, want.Variant
		d, err := list.ChooseInstance(&sys)
		if err != nil {
			return fmt.Errorf("%s has no image for %s (--all adds every one): %w", ref, want, err)
		}
		instances = []digest.Digest{d}
	}
	for _, d := range instances {
		info, err := list.Instance(d)
		if err != nil {
			return err
		}
		desc := ocispec.Descriptor{MediaType: info.MediaType, Digest: d, Size: info.Size, Platform: info.ReadOnly.Platform}
		if len(info.ReadOnly.Annotations) > 0 {
			desc.Annotations = maps.Clone(info.ReadOnly.Annotations)
		}
		if desc.Platform == nil {
			im, imt, err := src.GetManifest(ctx, &d)
			if err != nil {
				return fmt.Errorf("%s: %w", ref, err)
			}
			if desc, err = s.describe(ctx, src, im, imt, &d, reg.Sys); err != nil {
				return fmt.Errorf("%s: %w", ref, err)
			}
		}
		l.Add(o.apply(desc), pinned(iref, d))
	}
	return nil
}

// describe is the index entry of one image manifest, its platform read
// from its config.
func (s *Store) describe(ctx context.Context, src types.ImageSource, man []byte, mt string, instance *digest.Digest, sys *types.SystemContext) (ocispec.Descriptor, error) {
	d, err := manifest.Digest(man)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	img, err := cimage.FromUnparsedImage(ctx, sys, cimage.UnparsedInstance(src, instance))
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	cfg, err := img.OCIConfig(ctx)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("reading config: %w", err)
	}
	p := cfg.Platform
	return ocispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(man)), Platform: &p}, nil
}

// pinned is ref by digest d where the transport can say so (a registry),
// else ref as it is.
func pinned(ref types.ImageReference, d digest.Digest) string {
	if named := ref.DockerReference(); named != nil && ref.Transport().Name() == "docker" {
		if byDigest, err := reference.WithDigest(reference.TrimNamed(named), d); err == nil {
			return "docker://" + byDigest.String()
		}
	}
	return transports.ImageName(ref)
}

// apply sets o's platform and annotations on d.
func (o AddOptions) apply(d ocispec.Descriptor) ocispec.Descriptor {
	var p ocispec.Platform
	if d.Platform != nil {
		p = *d.Platform
	}
	if o.OS != "" {
		p.OS = o.OS
	}
	if o.Arch != "" {
		p.Architecture = o.Arch
	}
	if o.Variant != "" {
		p.Variant = o.Variant
	}
	if o.OSVersion != "" {
		p.OSVersion = o.OSVersion
	}
	if len(o.OSFeatures) > 0 {
		p.OSFeatures = slices.Clone(o.OSFeatures)
	}
	if len(o.Features) > 0 {
		// The image-spec dropped platform "features" (only Docker lists
		// have it): kept as an annotation, which both formats carry to
		// whoever reads the list here.
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		d.Annotations["org.opencontainers.image.platform.features"] = strings.Join(o.Features, ",")
	}
	d.Platform = &p
	if len(o.Annotations) > 0 {
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		maps.Copy(d.Annotations, o.Annotations)
	}
	return d
}

// RemoveFromList drops instance d from the list and returns the list's ID.
func (s *Store) RemoveFromList(list string, d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", &OptionError{fmt.Errorf("instance digest %q: %w", d, err)}
	}
	l, err := store.LoadList(s.s, list)
	if err != nil {
		return "", err
	}
	if !l.Remove(d) {
		return "", fmt.Errorf("manifest list %s has no instance %s", list, d)
	}
	return l.Save(s.s)
}

// RemoveList deletes the list name (only the list: its instances stay).
func (s *Store) RemoveList(name string) (Removed, error) {
	l, err := store.LoadList(s.s, name)
	if err != nil {
		return Removed{}, err
	}
	return store.Remove(s.s, l.ID, true)
}

// ListImage is one platform's local image of a multi-platform build.
type ListImage struct {
	ID       string
	Platform platform.Platform
}

// PutList names the local images imgs, one per platform, as the list
// name: with amend, the existing list of that name gets them (each
// replacing an instance of the same platform); otherwise a new list takes
// the name. It returns the list's ID and digest.
func (s *Store) PutList(name string, imgs []ListImage, amend bool, format image.Format) (string, digest.Digest, error) {
	named, err := store.NormalizeName(name)
	if err != nil {
		return "", "", &OptionError{fmt.Errorf("list name %q: %w", name, err)}
	}
	mt := ocispec.MediaTypeImageIndex
	if format == image.FormatDocker {
		mt = manifest.DockerV2ListMediaType
	}
	l := store.NewList(mt)
	if amend {
		switch old, err := store.LoadList(s.s, named.String()); {
		case err == nil:
			l = old
		case errors.Is(err, store.ErrNotList):
			return "", "", fmt.Errorf("--manifest %s: that is an image, not a manifest list", named)
		case !errors.Is(err, ErrImageUnknown):
			return "", "", err
		}
	}
	for _, im := range imgs {
		info, err := store.Inspect(s.s, im.ID)
		if err != nil {
			return "", "", err
		}
		p := im.Platform.OCI()
		ref, err := store.LocalRef(s.s, info.ID)
		if err != nil {
			return "", "", err
		}
		l.ReplacePlatform(ocispec.Descriptor{
			MediaType: info.ManifestType, Digest: info.Digest, Size: int64(len(info.Manifest)), Platform: &p,
		}, ref)
	}
	id, err := l.Save(s.s, named.String())
	if err != nil {
		return "", "", err
	}
	b, err := l.Bytes()
	if err != nil {
		return "", "", err
	}
	return id, digest.FromBytes(b), nil
}

// PushListOptions configure PushList.
type PushListOptions struct {
	Registry    RegistryOptions
	Compression Compression
	// Format is the format of the pushed manifests and index ("oci",
	// "docker"); "" keeps the list's.
	Format string
	// Progress receives containers/image progress; nil: none.
	Progress io.Writer
}

// PushList pushes every image of the local list and then the list itself
// to dest (a registry, an OCI layout or archive) and returns the digest
// of the index written. Instances not in the local store are read from
// where the list says they are.
func (s *Store) PushList(ctx context.Context, list, dest string, o PushListOptions) (digest.Digest, error) {
	kind, err := o.Compression.Kind()
	if err != nil {
		return "", err
	}
	l, err := store.LoadList(s.s, list)
	if err != nil {
		return "", err
	}
	if len(l.Index.Manifests) == 0 {
		return "", fmt.Errorf("manifest list %s is empty", list)
	}
	format := image.FormatOCI
	if l.MediaType == manifest.DockerV2ListMediaType {
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
	r := &image.Resolver{Store: s.s, Sys: reg.Sys, Log: s.log, Pull: image.PullNever, Mismatch: image.MismatchWarn}
	defer r.Close()
	entries := make([]pushers.ListEntry, 0, len(l.Index.Manifests))
	for _, d := range l.Index.Manifests {
		var p platform.Platform
		if d.Platform != nil {
			p = platform.FromOCI(*d.Platform)
		}
		ref, err := s.instanceRef(l, d.Digest)
		if err != nil {
			return "", err
		}
		img, err := r.Resolve(ctx, ref, p)
		if err != nil {
			return "", fmt.Errorf("manifest list %s: instance %s: %w", list, d.Digest, err)
		}
		entries = append(entries, pushers.ListEntry{Image: img, Platform: p, Full: d.Platform, Annotations: d.Annotations})
	}
	if t, _, ok := strings.Cut(dest, ":"); !ok || !IsTransport(t) {
		dest = "docker://" + dest
	}
	return pushers.PushList(ctx, entries, dest, pushers.Options{
		Store: s.s, Format: format, Sys: reg.Sys, ReportWriter: o.Progress,
		Variants: reg.Variants, Retry: reg.Retry,
		Compression: pushers.Compression{Kind: kind, Level: o.Compression.Level, Force: o.Compression.Force},
	})
}

// instanceRef is the reference Resolve reads instance d of l from: the
// local image by ID when the store has it, else what the list records.
func (s *Store) instanceRef(l *ManifestList, d digest.Digest) (string, error) {
	img, err := store.InstanceImage(s.s, l, d)
	if err != nil {
		return "", err
	}
	if img != nil {
		return "containers-storage:" + img.ID, nil
	}
	if ref := l.Instances[d]; ref != "" {
		return ref, nil
	}
	return "", fmt.Errorf("instance %s of manifest list %s is neither local nor recorded elsewhere", d, l.ID)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
