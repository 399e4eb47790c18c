package image

// Base image resolution: FROM references (local store, OCI layouts and
// archives, docker-archive files, registries) become Image values whose
// layers are read lazily through containers/image.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/builder-dev/builder/content"
	"github.com/builder-dev/builder/internal/store"
	"github.com/builder-dev/builder/platform"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	cimage "go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
)

// ErrNotKnownLocally is returned (wrapped) when a plain name is not in the
// local store and the pull policy (or the lack of a Puller) forbids pulling.
var ErrNotKnownLocally = errors.New("image not known locally")

// transports are the reference prefixes Resolve accepts; anything else is a
// plain image name (so "localhost:5000/app" stays a name).
var transports = map[string]bool{
	"oci": true, "oci-archive": true, "docker-archive": true,
	"containers-storage": true, "docker": true, "dir": true,
}

// Offline reports whether resolving ref reads only this machine: an OCI
// layout or archive, a docker archive, a directory, the local store. Plain
// names and docker:// references may reach a registry.
func Offline(ref string) bool {
	name, _, ok := strings.Cut(ref, ":")
	return ok && name != "docker" && transports[name]
}

// Resolver resolves base image references. Images it returns read their
// layers from sources that stay open until Close. A Resolver is safe for
// concurrent use.
type Resolver struct {
	// Store is the local store, for plain names and containers-storage:
	// references. It may be nil if neither is used.
	Store storage.Store
	// OpenStore, if set, gives the local store instead of Store when a
	// reference first needs it (a store still opening in the background).
	OpenStore func() (storage.Store, error)
	// Sys configures containers/image (registries.conf, auth, TLS...); may be nil.
	Sys *types.SystemContext
	// Log, if set, receives warnings (e.g. a single-platform base image
	// for another platform).
	Log *slog.Logger
	// Puller, if set, pulls plain names and docker:// references into the
	// local store as Pull says; without it plain names are local-only and
	// docker:// references are read from the registry without storing.
	Puller Puller
	// Direct reads plain names not in the local store straight from their
	// registry, storing nothing (where the store cannot take layers: a
	// non-root pod without a user namespace).
	Direct bool
	// Pull is the pull policy for plain names (--pull).
	Pull PullPolicy
	// Mismatch says what an image of another platform than the one asked
	// for is: an error (the default) or, with MismatchWarn, used with a
	// warning. An index without an instance for the platform is always an
	// error.
	Mismatch Mismatch

	mu      sync.Mutex
	sources []types.ImageSource
	closed  bool
	pulled  map[string]pullResult // by name + platform: what this resolver's pulls gave
}

// Resolve opens ref for platform p (the runtime platform when p.OS or
// p.Architecture is empty) and returns the image with lazily opened layers.
//
// Reference forms: "oci:DIR[:TAG]", "oci-archive:FILE[:TAG]",
// "docker-archive:FILE[:REF]", "containers-storage:REF", "docker://REF",
// "dir:PATH", and plain names, which are looked up in the local store with
// podman's short-name rules and otherwise fail with ErrNotKnownLocally.
//
// From a manifest list or image index, the manifest matching p is chosen
// (variants as containers/image matches them). The config is parsed from
// the raw config blob, so Docker extensions (Healthcheck, OnBuild, Shell)
// survive. Layers are described as the source serves them (containers-storage
// and docker-archive sources serve uncompressed tar, whose digest is the
// diff ID) and their Open verifies digest and size.
func (r *Resolver) Resolve(ctx context.Context, ref string, p platform.Platform) (*Image, error) {
	if p.IsZero() {
		p = platform.Host()
	}
	p = platform.Normalize(p)
	iref, err := r.parse(ctx, ref, p)
	if err != nil {
		var pe *PlatformError
		if errors.As(err, &pe) && pe.Image == "" {
			pe.Image = ref
		}
		return nil, err
	}
	src, err := iref.NewImageSource(ctx, r.Sys)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", ref, err)
	}
	img, err := r.load(ctx, src, p)
	if err != nil {
		src.Close()
		var pe *PlatformError
		if errors.As(err, &pe) && pe.Image == "" {
			pe.Image = ref
			return nil, pe
		}
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		src.Close()
		return nil, errors.New("resolver is closed")
	}
	r.sources = append(r.sources, src)
	return img, nil
}

// Close closes every source opened by Resolve. Layers of resolved images
// cannot be opened afterwards.
func (r *Resolver) Close() error {
	r.mu.Lock()
	srcs := r.sources
	r.sources, r.closed = nil, true
	r.mu.Unlock()
	var errs []error
	for _, s := range srcs {
		if err := s.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *Resolver) parse(ctx context.Context, ref string, p platform.Platform) (types.ImageReference, error) {
	name, rest, hasPrefix := strings.Cut(ref, ":")
	if !hasPrefix || !transports[name] || (name == "docker" && r.Puller != nil) {
		return r.resolveName(ctx, ref, p)
	}
	if name == "containers-storage" && !strings.HasPrefix(rest, "[") {
		return r.storeRef(rest, p)
	}
	iref, err := alltransports.ParseImageName(ref)
	if err != nil {
		return nil, fmt.Errorf("parsing image reference %q: %w", ref, err)
	}
	return iref, nil
}

// storeRef resolves name in r.Store with podman's rules and returns a
// reference to the image by ID (for a manifest list, to its instance for p).
func (r *Resolver) storeRef(name string, p platform.Platform) (types.ImageReference, error) {
	st, err := r.localStore(name)
	if err != nil {
		return nil, err
	}
	m, err := store.Find(st, r.Sys, name)
	if err != nil {
		return nil, err
	}
	return r.localRef(st, name, m.Image, p)
}

// localStore is the local store that ref needs.
func (r *Resolver) localStore(ref string) (storage.Store, error) {
	st, err := r.store()
	if err == nil && st == nil {
		err = fmt.Errorf("%s: no local store configured", ref)
	}
	return st, err
}

// store is the local store, nil if there is none.
func (r *Resolver) store() (storage.Store, error) {
	if r.OpenStore != nil {
		return r.OpenStore()
	}
	return r.Store, nil
}

// localRef is the reference of the local image img, or of its instance
// for p when img is a manifest list (podman's, buildah's or builder's):
// the instance's local image when the store has it, else where the list
// says it is (an instance added from a registry).
func (r *Resolver) localRef(st storage.Store, name string, img *storage.Image, p platform.Platform) (types.ImageReference, error) {
	if !store.IsList(st, img) {
		return storageRefByID(st, img.ID)
	}
	l, err := store.LoadList(st, img.ID)
	if err != nil {
		return nil, err
	}
	inst, ok := l.Choose(p)
	if !ok {
		return nil, &PlatformError{Image: name, Want: p, Have: l.Platforms(), List: true}
	}
	local, err := store.InstanceImage(st, l, inst.Digest)
	if err != nil {
		return nil, err
	}
	if local != nil {
		return storageRefByID(st, local.ID)
	}
	where := l.Instances[inst.Digest]
	if where == "" {
		return nil, fmt.Errorf("manifest list %s: instance %s for %s is neither in the local store nor recorded elsewhere", name, inst.Digest, p)
	}
	iref, err := alltransports.ParseImageName(where)
	if err != nil {
		return nil, fmt.Errorf("manifest list %s: instance %s: %w", name, inst.Digest, err)
	}
	return iref, nil
}

// maxIndexDepth bounds nested indexes (an index whose entry is an index).
const maxIndexDepth = 4

func (r *Resolver) load(ctx context.Context, src types.ImageSource, p platform.Platform) (*Image, error) {
	var instance *digest.Digest
	unparsed := cimage.UnparsedInstance(src, nil)
	man, mt, err := unparsed.Manifest(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	for depth := 0; manifest.MIMETypeIsMultiImage(mt); depth++ {
		if depth == maxIndexDepth {
			return nil, fmt.Errorf("image indexes nested more than %d deep", maxIndexDepth)
		}
		list, err := manifest.ListFromBlob(man, mt)
		if err != nil {
			return nil, fmt.Errorf("parsing manifest list: %w", err)
		}
		d, err := list.ChooseInstance(r.platformContext(p))
		if err != nil {
			return nil, &PlatformError{Want: p, Have: listPlatforms(list), List: true}
		}
		inst, err := list.Instance(d)
		if err != nil {
			return nil, err
		}
		instance = &d
		unparsed = cimage.UnparsedInstance(src, instance)
		if man, mt, err = unparsed.Manifest(ctx); err != nil {
			return nil, fmt.Errorf("reading manifest %s: %w", d, err)
		}
		if inst.Size >= 0 && int64(len(man)) != inst.Size {
			return nil, fmt.Errorf("manifest %s: %d bytes, the index says %d: %w", d, len(man), inst.Size, content.ErrMismatch)
		}
	}
	switch mt {
	case ocispec.MediaTypeImageManifest, manifest.DockerV2Schema2MediaType:
	default:
		return nil, fmt.Errorf("unsupported manifest type %q", mt)
	}
	manDigest, err := manifest.Digest(man)
	if err != nil {
		return nil, err
	}

	ci, err := cimage.FromUnparsedImage(ctx, r.Sys, unparsed)
	if err != nil {
		return nil, fmt.Errorf("reading image: %w", err)
	}
	switch cmt := ci.ConfigInfo().MediaType; cmt {
	case ocispec.MediaTypeImageConfig, manifest.DockerV2Schema2ConfigMediaType:
	default:
		return nil, fmt.Errorf("manifest %s is not a container image (config media type %q)", manDigest, cmt)
	}
	rawConfig, err := ci.ConfigBlob(ctx) // verified against the manifest's config digest
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if ci := ci.ConfigInfo(); ci.Size >= 0 && int64(len(rawConfig)) != ci.Size {
		return nil, fmt.Errorf("config %s: %d bytes, the manifest says %d: %w", ci.Digest, len(rawConfig), ci.Size, content.ErrMismatch)
	}
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(rawConfig, &cfg); err != nil {
		return nil, fmt.Errorf("parsing config: %w", err)
	}
	if have := platform.FromOCI(cfg.Platform); instance == nil && !have.IsZero() && !p.Matches(have) {
		if r.Mismatch != MismatchWarn {
			return nil, &PlatformError{Want: p, Have: []platform.Platform{have}}
		}
		r.warn("base image platform differs from the requested platform", "image", have, "requested", p)
	}

	infos := ci.LayerInfos()
	forCopy, err := ci.LayerInfosForCopy(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading layer information: %w", err)
	}
	if forCopy != nil {
		if len(forCopy) != len(infos) {
			return nil, fmt.Errorf("source reports %d layers for a manifest with %d", len(forCopy), len(infos))
		}
		infos = forCopy
	}
	if len(infos) != len(cfg.RootFS.DiffIDs) {
		return nil, fmt.Errorf("manifest has %d layers but the config has %d diff IDs", len(infos), len(cfg.RootFS.DiffIDs))
	}
	g := &getter{src: src}
	if !src.HasThreadSafeGetBlob() {
		g.mu = new(sync.Mutex)
	}
	layers := make([]Layer, len(infos))
	for i, bi := range infos {
		mediaType := bi.MediaType
		if mediaType == "" {
			return nil, fmt.Errorf("layer %d (%s): no media type", i, bi.Digest)
		}
		if _, err := LayerCompression(mediaType); err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i, bi.Digest, err)
		}
		if bi.Digest == cfg.RootFS.DiffIDs[i] {
			// The source serves the uncompressed tar (docker-archive files
			// always do, whatever the media type they report).
			mediaType = uncompressedMediaType(mediaType)
		}
		layers[i] = &sourceLayer{
			g: g,
			desc: ocispec.Descriptor{
				MediaType:   mediaType,
				Digest:      bi.Digest,
				Size:        bi.Size,
				URLs:        bi.URLs,
				Annotations: bi.Annotations,
			},
			diffID: cfg.RootFS.DiffIDs[i],
		}
	}
	img := &Image{Config: cfg, Layers: layers, ManifestDigest: manDigest}
	if canon, err := img.canonicalConfig(); err == nil {
		img.raw, img.rawCanon = rawConfig, canon
	}
	return img, nil
}

// uncompressedMediaType is the uncompressed layer type of mediaType's
// family (Docker or OCI).
func uncompressedMediaType(mediaType string) string {
	if strings.HasPrefix(mediaType, "application/vnd.docker.") {
		if k := layerKinds[mediaType]; k.foreign {
			return MediaTypeDockerForeign
		}
		return MediaTypeDockerLayer
	}
	return ocispec.MediaTypeImageLayer
}

// platformContext is r.Sys with the platform choice set to p.
func (r *Resolver) platformContext(p platform.Platform) *types.SystemContext {
	var sys types.SystemContext
	if r.Sys != nil {
		sys = *r.Sys
	}
	sys.OSChoice, sys.ArchitectureChoice, sys.VariantChoice = p.OS, p.Architecture, p.Variant
	return &sys
}

// getter serialises GetBlob calls on sources that are not thread-safe.
type getter struct {
	src types.ImageSource
	mu  *sync.Mutex // nil when src.HasThreadSafeGetBlob
}

func (g *getter) get(ctx context.Context, bi types.BlobInfo) (io.ReadCloser, error) {
	if g.mu != nil {
		g.mu.Lock()
		defer g.mu.Unlock()
	}
	rc, _, err := g.src.GetBlob(ctx, bi, none.NoCache)
	return rc, err
}

// sourceLayer is a layer of a resolved image; Open fetches it from the source.
type sourceLayer struct {
	g      *getter
	desc   ocispec.Descriptor
	diffID digest.Digest
}

func (l *sourceLayer) Descriptor() ocispec.Descriptor { return l.desc }
func (l *sourceLayer) DiffID() digest.Digest          { return l.diffID }

// Open returns the blob; reading it to EOF fails if its digest or size
// differ from the descriptor.
func (l *sourceLayer) Open(ctx context.Context) (io.ReadCloser, error) {
	rc, err := l.g.get(ctx, types.BlobInfo{
		Digest:      l.desc.Digest,
		Size:        l.desc.Size,
		URLs:        l.desc.URLs,
		Annotations: l.desc.Annotations,
		MediaType:   l.desc.MediaType,
	})
	if err != nil {
		return nil, fmt.Errorf("fetching layer %s: %w", l.desc.Digest, err)
	}
	return content.Verify(rc, l.desc.Digest, l.desc.Size), nil
}
