package images

// Manifest lists in the local store: what `builder manifest` does, and
// how a multi-platform build names its images. Lists are kept as podman
// and buildah keep them (see internal/store), so each tool reads the
// others'.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/builder-dev/builder/compress"
	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/internal/store"
	"github.com/builder-dev/builder/platform"
	"github.com/builder-dev/builder/pushers"
	"github.com/builder-dev/builder/registry"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker/reference"
	cimage "go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	storageTransport "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
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
// existing one) and adds o.Add; it returns the list's ID. As in buildah, a
// name any image already holds is an error without Amend, and with Amend
// when that image is not a list. Nothing is saved unless every image
// could be added.
func (s *Store) CreateList(ctx context.Context, name string, o CreateListOptions) (string, error) {
	named, err := store.NormalizeName(name)
	if err != nil {
		return "", &OptionError{fmt.Errorf("list name %q: %w", name, err)}
	}
	if _, ok := named.(reference.Digested); ok {
		return "", Optionf("list name %q: a list is named by a tag, not a digest", name)
	}
	mt := ocispec.MediaTypeImageIndex
	switch o.Format {
	case "", "oci":
	case "docker", "v2s2":
		mt = manifest.DockerV2ListMediaType
	default:
		return "", Optionf("--format: unknown list format %q (want oci or docker)", o.Format)
	}
	// By its normalised name only: "list" must not amend a
	// quay.io/x/list:latest found by a short-name rule.
	l, err := store.LoadList(s.st(), named.String())
	switch {
	case err == nil && !o.Amend:
		return "", fmt.Errorf("a manifest list named %s already exists (ID %s): --amend adds to it", named, shortID(l.ID))
	case err == nil:
	case errors.Is(err, store.ErrNotList) && o.Amend:
		return "", fmt.Errorf("--amend: %w", err)
	case errors.Is(err, store.ErrNotList):
		return "", fmt.Errorf("the name %s is in use: %w", named, err)
	case errors.Is(err, ErrImageUnknown):
		l = store.NewList(mt)
	default:
		return "", err
	}
	for _, ref := range o.Add {
		if _, err := s.addTo(ctx, l, ref, AddOptions{All: o.All, Registry: o.Registry}); err != nil {
			return "", err
		}
	}
	return l.Save(s.st(), named.String())
}

// LoadList reads the local list name. A name that no local image has is
// an error satisfying errors.Is(err, ErrImageUnknown); an image that is
// not a list, errors.Is(err, ErrNotList).
func (s *Store) LoadList(name string) (*ManifestList, error) {
	l, err := store.LoadList(s.st(), name)
	if errors.Is(err, ErrImageUnknown) {
		return nil, fmt.Errorf("no manifest list named %s in local storage: %w", name, ErrImageUnknown)
	}
	return l, err
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
// and the digest of the instance added (the first, with All). An instance
// the list already has is replaced in place.
func (s *Store) AddToList(ctx context.Context, list, ref string, o AddOptions) (string, digest.Digest, error) {
	l, err := s.LoadList(list)
	if err != nil {
		return "", "", err
	}
	if len(o.Annotations) > 0 && l.MediaType == manifest.DockerV2ListMediaType {
		return "", "", Optionf("--annotation: %s is a Docker manifest list, which has no annotations (an OCI index has: create the list with --format oci)", list)
	}
	added, err := s.addTo(ctx, l, ref, o)
	if err != nil {
		return "", "", err
	}
	id, err := l.Save(s.st())
	if err != nil {
		return "", "", err
	}
	return id, added[0], nil
}

// addTo adds ref's instances to l (not saved) and returns their digests,
// at least one.
func (s *Store) addTo(ctx context.Context, l *ManifestList, ref string, o AddOptions) ([]digest.Digest, error) {
	if t, rest, ok := strings.Cut(ref, ":"); !ok || !IsTransport(t) || t == "containers-storage" {
		name := ref
		if ok && t == "containers-storage" {
			name = rest
		}
		if m, err := store.Find(s.st(), nil, name); err == nil {
			return s.addLocal(l, name, m.Image.ID, o)
		} else if ok || !errors.Is(err, ErrImageUnknown) {
			return nil, err
		}
		ref = "docker://" + ref // not local: a registry reference, as buildah takes it
	}
	return s.addRemote(ctx, l, ref, o)
}

// want is the platform an instance is chosen for from a list added
// without All: --os/--arch/--variant when given, else this machine's.
func (o AddOptions) want() platform.Platform {
	if o.OS != "" || o.Arch != "" {
		h := platform.Host()
		p := platform.Platform{OS: o.OS, Architecture: o.Arch, Variant: o.Variant}
		if p.OS == "" {
			p.OS = h.OS
		}
		if p.Architecture == "" {
			p.Architecture = h.Architecture
		}
		return platform.Normalize(p)
	}
	return platform.Host()
}

// addLocal adds the local image id (or, for a list, its instances: all
// with o.All, else the one for o.want()).
func (s *Store) addLocal(l *ManifestList, name, id string, o AddOptions) ([]digest.Digest, error) {
	if src, err := store.LoadList(s.st(), id); err == nil {
		if src.ID == l.ID {
			return nil, fmt.Errorf("%s is the manifest list itself", name)
		}
		descs := src.Index.Manifests
		if !o.All {
			want := o.want()
			d, ok := src.Choose(want)
			if !ok {
				return nil, fmt.Errorf("%s is a manifest list with no image for %s (--all adds every one)", name, want)
			}
			descs = []ocispec.Descriptor{d}
		}
		if len(descs) == 0 {
			return nil, fmt.Errorf("%s is an empty manifest list", name)
		}
		var added []digest.Digest
		for _, d := range descs {
			ref := src.Instances[d.Digest]
			if img, err := store.InstanceImage(s.st(), src, d.Digest); err == nil && img != nil {
				if ref, err = store.LocalRef(s.st(), img.ID); err != nil {
					return nil, err
				}
			}
			l.Add(o.apply(d), ref)
			added = append(added, d.Digest)
		}
		return added, nil
	}
	info, err := store.Inspect(s.st(), id)
	if err != nil {
		return nil, err
	}
	d, err := localDescriptor(info)
	if err != nil {
		return nil, err
	}
	ref, err := store.LocalRef(s.st(), info.ID)
	if err != nil {
		return nil, err
	}
	l.Add(o.apply(d), ref)
	return []digest.Digest{d.Digest}, nil
}

// localDescriptor is the index entry of a local image: its manifest's
// digest (that of the manifest itself, not of a list it was pulled from),
// size and type, and the platform its config names.
func localDescriptor(info *Info) (ocispec.Descriptor, error) {
	d, err := manifest.Digest(info.Manifest)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("image %s: %w", shortID(info.ID), err)
	}
	p := info.Config.Platform
	return ocispec.Descriptor{MediaType: info.ManifestType, Digest: d, Size: int64(len(info.Manifest)), Platform: &p}, nil
}

// addRemote adds an image read through containers/image: its manifest
// and config are read, no layer is fetched. The instance is recorded by
// digest, so a tag moved later cannot change what the list names.
func (s *Store) addRemote(ctx context.Context, l *ManifestList, ref string, o AddOptions) ([]digest.Digest, error) {
	iref, err := alltransports.ParseImageName(ref)
	if err != nil {
		return nil, &OptionError{fmt.Errorf("image reference %q: %w", ref, err)}
	}
	reg, err := s.Registry(o.Registry)
	if err != nil {
		return nil, err
	}
	src, err := iref.NewImageSource(ctx, reg.Sys)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", ref, err)
	}
	defer src.Close()
	man, mt, err := src.GetManifest(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", ref, err)
	}
	if !manifest.MIMETypeIsMultiImage(mt) {
		d, err := s.describe(ctx, src, man, mt, nil, reg.Sys)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		l.Add(o.apply(d), pinned(iref, d.Digest))
		return []digest.Digest{d.Digest}, nil
	}
	list, err := manifest.ListFromBlob(man, mt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	instances := list.Instances()
	if !o.All {
		want := o.want()
		sys := *reg.Sys
		sys.OSChoice, sys.ArchitectureChoice, sys.VariantChoice = want.OS, want.Architecture, want.Variant
		d, err := list.ChooseInstance(&sys)
		if err != nil {
			return nil, fmt.Errorf("%s has no image for %s (--all adds every one): %w", ref, want, err)
		}
		instances = []digest.Digest{d}
	}
	if len(instances) == 0 {
		return nil, fmt.Errorf("%s is an empty manifest list", ref)
	}
	features := map[digest.Digest]string{} // a Docker list's platform.features
	if mt == manifest.DockerV2ListMediaType {
		if dl, err := manifest.Schema2ListFromManifest(man); err == nil {
			for _, m := range dl.Manifests {
				if len(m.Platform.Features) > 0 {
					features[m.Digest] = strings.Join(m.Platform.Features, ",")
				}
			}
		}
	}
	for _, d := range instances {
		info, err := list.Instance(d)
		if err != nil {
			return nil, err
		}
		desc := ocispec.Descriptor{MediaType: info.MediaType, Digest: d, Size: info.Size, Platform: info.ReadOnly.Platform}
		if len(info.ReadOnly.Annotations) > 0 {
			desc.Annotations = maps.Clone(info.ReadOnly.Annotations)
		}
		if desc.Platform == nil {
			im, imt, err := src.GetManifest(ctx, &d)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", ref, err)
			}
			if desc, err = s.describe(ctx, src, im, imt, &d, reg.Sys); err != nil {
				return nil, fmt.Errorf("%s: %w", ref, err)
			}
		}
		if f := features[d]; f != "" {
			if desc.Annotations == nil {
				desc.Annotations = map[string]string{}
			}
			desc.Annotations[store.FeaturesAnnotation] = f
		}
		l.Add(o.apply(desc), pinned(iref, d))
	}
	return instances, nil
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
		// have it): kept as an annotation, written as platform.features in
		// a Docker list (see store.FeaturesAnnotation).
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		d.Annotations[store.FeaturesAnnotation] = strings.Join(o.Features, ",")
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
		return "", &OptionError{fmt.Errorf("instance digest %q: %w (want sha256:<64 hex digits>)", d, err)}
	}
	l, err := s.LoadList(list)
	if err != nil {
		return "", err
	}
	if !l.Remove(d) {
		return "", fmt.Errorf("manifest list %s has no instance %s", list, d)
	}
	return l.Save(s.st())
}

// RemoveList removes the list name (only the list: its instances stay)
// with `podman rmi`'s rules for names: one of several names of the list
// is only untagged. An image that is not a list is an error (ErrNotList)
// and stays.
func (s *Store) RemoveList(name string) (Removed, error) {
	if _, err := s.LoadList(name); err != nil {
		return Removed{}, err
	}
	return store.Remove(s.st(), name, false)
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
		switch old, err := store.LoadList(s.st(), named.String()); {
		case err == nil:
			l = old
		case errors.Is(err, store.ErrNotList):
			return "", "", fmt.Errorf("--manifest %s: that is an image, not a manifest list", named)
		case !errors.Is(err, ErrImageUnknown):
			return "", "", err
		}
	}
	for _, im := range imgs {
		info, err := store.Inspect(s.st(), im.ID)
		if err != nil {
			return "", "", err
		}
		d, err := localDescriptor(info)
		if err != nil {
			return "", "", err
		}
		p := im.Platform.OCI()
		d.Platform = &p
		ref, err := store.LocalRef(s.st(), info.ID)
		if err != nil {
			return "", "", err
		}
		l.ReplacePlatform(d, ref)
	}
	id, err := l.Save(s.st(), named.String())
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
	// IndexOnly pushes the list alone, as stored, and none of its images
	// (`manifest push --all=false`): they must be at the destination
	// already, or the registry refuses the list (an OCI layout takes it).
	IndexOnly bool
	// Remove deletes the local list (not its images) once the push
	// succeeded (`manifest push --rm`).
	Remove bool
	// Progress receives containers/image progress; nil: none.
	Progress io.Writer
}

// PushList pushes every image of the local list and then the list itself
// to dest (a registry, an OCI layout or archive) and returns the digest
// of the index written. Instances not in the local store are read from
// where the list says they are. Local images are compressed for the push
// (each layer once in its life, as Push does), so the index written names
// other manifest digests than the local list: the same images, platforms
// and annotations.
func (s *Store) PushList(ctx context.Context, list, dest string, o PushListOptions) (digest.Digest, error) {
	kind, err := o.Compression.Kind()
	if err != nil {
		return "", err
	}
	l, err := s.LoadList(list)
	if err != nil {
		return "", err
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
	if t, _, ok := strings.Cut(dest, ":"); !ok || !IsTransport(t) {
		dest = "docker://" + dest
	}
	reg, err := s.Registry(o.Registry)
	if err != nil {
		return "", err
	}
	var d digest.Digest
	if o.IndexOnly {
		d, err = s.pushIndex(ctx, l, dest, o.Format != "", format, reg)
	} else {
		d, err = s.pushAll(ctx, l, list, dest, format, kind, reg, o)
	}
	if err != nil {
		return "", err
	}
	if o.Remove {
		if _, err := store.Remove(s.st(), l.ID, true); err != nil {
			return d, fmt.Errorf("pushed, but removing manifest list %s: %w", list, err)
		}
	}
	return d, nil
}

// pushAll pushes l's images, then the index over them.
func (s *Store) pushAll(ctx context.Context, l *ManifestList, list, dest string, format image.Format, kind compress.Kind, reg *Registry, o PushListOptions) (digest.Digest, error) {
	if len(l.Index.Manifests) == 0 {
		return "", fmt.Errorf("manifest list %s is empty: nothing to push", list)
	}
	release, err := s.useBlobs()
	if err != nil {
		return "", err
	}
	defer release()
	// No warning for an instance whose config names another platform
	// than its entry: `manifest add --arch` says so on purpose.
	r := &image.Resolver{Store: s.st(), Sys: reg.Sys, Pull: image.PullNever, Mismatch: image.MismatchWarn}
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
	return pushers.PushList(ctx, entries, dest, pushers.Options{
		Store: s.st(), Format: format, Sys: reg.Sys, ReportWriter: o.Progress,
		Variants: reg.Variants, Retry: reg.Retry,
		Compression: pushers.Compression{Kind: kind, Level: o.Compression.Level, Force: o.Compression.Force},
	})
}

// pushIndex copies the list alone, as stored (converted when convert
// says so), to dest, as `buildah manifest push` without --all does.
func (s *Store) pushIndex(ctx context.Context, l *ManifestList, dest string, convert bool, format image.Format, reg *Registry) (digest.Digest, error) {
	dref, err := alltransports.ParseImageName(dest)
	if err != nil {
		return "", &OptionError{fmt.Errorf("destination %q: %w", dest, err)}
	}
	switch dref.Transport().Name() {
	case storageTransport.Transport.Name():
		return "", Optionf("push to %s: the local store keeps manifest lists as images of their own", dest)
	case "docker-archive":
		return "", Optionf("push to %s: a docker-archive holds one image, not a manifest list", dest)
	}
	sref, err := storageTransport.Transport.NewStoreReference(s.st(), nil, l.ID)
	if err != nil {
		return "", err
	}
	opts := copy.Options{
		ImageListSelection: copy.CopySpecificImages, // and no instance: the list only
		RemoveSignatures:   true,
		SourceCtx:          reg.Sys,
		DestinationCtx:     reg.Sys,
	}
	if convert {
		opts.ForceManifestMIMEType = ocispec.MediaTypeImageManifest
		if format == image.FormatDocker {
			opts.ForceManifestMIMEType = manifest.DockerV2Schema2MediaType
		}
	}
	op, sys := registry.PushOp(dref, transports.ImageName(dref), reg.Sys)
	opts.SourceCtx, opts.DestinationCtx = sys, sys
	copied, err := registry.Copy(ctx, reg.Retry, op, dref, sref, opts)
	if err != nil {
		return "", err
	}
	return manifest.Digest(copied)
}

// instanceRef is the reference Resolve reads instance d of l from: the
// local image by ID when the store has it, else what the list records.
func (s *Store) instanceRef(l *ManifestList, d digest.Digest) (string, error) {
	img, err := store.InstanceImage(s.st(), l, d)
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

// InspectList returns the manifest list name as JSON: a local list as it
// is stored (and pushed when no other format is asked for), else, for a
// transport reference (docker://REF, oci:DIR[:TAG], ...) or a registry
// name (host/repo[:tag]) that is no local list, the list read from there.
// A local name that is an image and not a list, or a name of no image
// without a registry part, is an error.
func (s *Store) InspectList(ctx context.Context, name string, o RegistryOptions) ([]byte, error) {
	if t, _, ok := strings.Cut(name, ":"); ok && IsTransport(t) && t != "containers-storage" {
		return inspectRemoteList(ctx, name, o)
	}
	local := strings.TrimPrefix(name, "containers-storage:")
	l, err := s.LoadList(local)
	if err == nil {
		// Byte for byte as stored (by whichever tool wrote it): what
		// `manifest push --all=false` writes.
		return s.st().ImageBigData(l.ID, storage.ImageDigestBigDataKey)
	}
	if local != name || !registryName(local) || !(errors.Is(err, ErrImageUnknown) || errors.Is(err, ErrNotList)) {
		return nil, err
	}
	// As buildah: a registry's list of that name.
	b, rerr := inspectRemoteList(ctx, "docker://"+local, o)
	if rerr != nil {
		return nil, fmt.Errorf("%w; nor could it be read as a registry's: %w", err, rerr)
	}
	return b, nil
}

// registryName reports whether name (no transport) names a registry: its
// first part is a host other than localhost.
func registryName(name string) bool {
	ref, err := reference.Parse(name)
	if err != nil {
		return false
	}
	named, ok := ref.(reference.Named)
	if !ok {
		return false
	}
	d := reference.Domain(named)
	return strings.ContainsAny(d, ".:") && d != "localhost" && !strings.HasPrefix(d, "localhost:")
}

func inspectRemoteList(ctx context.Context, ref string, o RegistryOptions) ([]byte, error) {
	man, mt, err := InspectManifest(ctx, ref, o)
	if err != nil {
		return nil, err
	}
	if !manifest.MIMETypeIsMultiImage(mt) {
		return nil, fmt.Errorf("%s is an image (manifest type %s), not a manifest list", ref, mt)
	}
	return man, nil
}

// InspectManifest reads the top-level manifest of ref (docker://REF, the
// default for a ref without transport, or oci:, oci-archive:, dir:,
// docker-archive:) as stored there, and returns it with its MIME type.
// Nothing but the manifest is read. Local images are not inspected here
// (Store.Inspect, Store.LoadList).
func InspectManifest(ctx context.Context, ref string, o RegistryOptions) ([]byte, string, error) {
	t, _, ok := strings.Cut(ref, ":")
	switch {
	case ok && t == "containers-storage":
		return nil, "", Optionf("%s: InspectManifest reads remote images, not the local store", ref)
	case !ok || !IsTransport(t):
		ref = "docker://" + ref
	}
	iref, err := alltransports.ParseImageName(ref)
	if err != nil {
		return nil, "", &OptionError{fmt.Errorf("image reference %q: %w", ref, err)}
	}
	sys, err := o.SystemContext(nil, "")
	if err != nil {
		return nil, "", &OptionError{err}
	}
	registry.SkipUnreadableAuth(sys, nil)
	var man []byte
	var mt string
	read := func(ctx context.Context) error {
		src, err := iref.NewImageSource(ctx, sys)
		if err != nil {
			return err
		}
		defer src.Close()
		man, mt, err = src.GetManifest(ctx, nil)
		return err
	}
	if named := iref.DockerReference(); named != nil && iref.Transport().Name() == "docker" {
		op := registry.Op{Verb: "read manifest of", Registry: reference.Domain(named), Ref: named.String()}
		err = op.Do(ctx, o.Retrier(), read)
	} else if err = read(ctx); err != nil {
		err = fmt.Errorf("reading %s: %w", transports.ImageName(iref), err)
	}
	if err != nil {
		return nil, "", err
	}
	return man, mt, nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
