package store

// Manifest lists in the local store, in the form podman and buildah keep
// them (containers/common's manifests package): an image with no layer
// whose "manifest" item is the list (an OCI index or a Docker manifest
// list) and whose "instances.json" item maps each instance's manifest
// digest to a containers/image reference of where the instance is (for
// instances built or pulled here, the local image; for `manifest add
// docker://...`, the registry). The key "" names the list's own image ID.
// Written so, `podman manifest inspect|push` and `buildah manifest ...`
// work on builder's lists and builder's on theirs.

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/builder-dev/builder/platform"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
	storageTransport "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/transports"
	"go.podman.io/storage"
)

// instancesKey is the big-data item podman keeps a list's instance
// references in.
const instancesKey = "instances.json"

// FeaturesAnnotation is where an instance's platform "features" (a field
// only Docker manifest lists have; the image-spec dropped it) is kept in
// the OCI form of a list, comma-separated. A Docker list is written with
// it as platform.features, and read back into it.
const FeaturesAnnotation = "org.opencontainers.image.platform.features"

// maxListSize bounds a stored list or instances item read back (a list of
// thousands of platforms is still far below it).
const maxListSize = 4 << 20

// ManifestList is a manifest list of the local store.
type ManifestList struct {
	ID    string   // the list's image ID ("" before its first Save)
	Names []string // its names in the store
	// MediaType is the list's type when saved: OCI index (default) or
	// Docker manifest list.
	MediaType string
	// Index is the list itself; for a Docker list, the same fields with
	// the Docker media types.
	Index ocispec.Index
	// Instances maps each instance's manifest digest to the
	// containers/image reference it is read from.
	Instances map[digest.Digest]string
}

// ErrNotList is returned (wrapped) when an image is not a manifest list.
var ErrNotList = errors.New("not a manifest list")

// NewList is an empty list of mediaType (OCI index when "").
func NewList(mediaType string) *ManifestList {
	if mediaType == "" {
		mediaType = ocispec.MediaTypeImageIndex
	}
	l := &ManifestList{MediaType: mediaType, Instances: map[digest.Digest]string{}}
	l.Index.SchemaVersion = 2
	l.Index.MediaType = mediaType
	return l
}

// IsList reports whether img is a manifest list kept as podman keeps them
// (an image pulled whole from a registry index is not: it is one image).
func IsList(s storage.Store, img *storage.Image) bool {
	if !slices.Contains(img.BigDataNames, instancesKey) {
		return false
	}
	man, err := s.ImageBigData(img.ID, storage.ImageDigestBigDataKey)
	return err == nil && manifest.MIMETypeIsMultiImage(manifest.GuessMIMEType(man))
}

// LoadList reads the list nameOrID (found as Find finds images).
func LoadList(s storage.Store, nameOrID string) (*ManifestList, error) {
	m, err := Find(s, nil, nameOrID)
	if err != nil {
		return nil, err
	}
	return listOf(s, m.Image)
}

// listOf reads img as a list.
func listOf(s storage.Store, img *storage.Image) (*ManifestList, error) {
	if !IsList(s, img) {
		return nil, fmt.Errorf("image %s (%s): %w", shortID(img.ID), strings.Join(img.Names, ", "), ErrNotList)
	}
	man, err := s.ImageBigData(img.ID, storage.ImageDigestBigDataKey)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", shortID(img.ID), err)
	}
	inst, err := s.ImageBigData(img.ID, instancesKey)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", shortID(img.ID), err)
	}
	if len(man) > maxListSize || len(inst) > maxListSize {
		return nil, fmt.Errorf("list %s: larger than %d bytes", shortID(img.ID), maxListSize)
	}
	l := &ManifestList{ID: img.ID, Names: slices.Clone(img.Names), MediaType: manifest.GuessMIMEType(man)}
	if err := json.Unmarshal(man, &l.Index); err != nil {
		return nil, fmt.Errorf("list %s: parsing: %w", shortID(img.ID), err)
	}
	if l.MediaType == manifest.DockerV2ListMediaType {
		if err := dockerFeatures(man, l.Index.Manifests); err != nil {
			return nil, fmt.Errorf("list %s: parsing: %w", shortID(img.ID), err)
		}
	}
	var refs map[digest.Digest]string
	if err := json.Unmarshal(inst, &refs); err != nil {
		return nil, fmt.Errorf("list %s: parsing %s: %w", shortID(img.ID), instancesKey, err)
	}
	delete(refs, "")
	l.Instances = refs
	if l.Instances == nil {
		l.Instances = map[digest.Digest]string{}
	}
	for _, d := range l.Index.Manifests {
		if err := d.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("list %s: instance %q: %w", shortID(img.ID), d.Digest, err)
		}
	}
	return l, nil
}

// dockerFeatures copies the platform features of the Docker list man into
// the FeaturesAnnotation of its entries in descs (the same list parsed as
// an OCI index, which has no such field).
func dockerFeatures(man []byte, descs []ocispec.Descriptor) error {
	list, err := manifest.Schema2ListFromManifest(man)
	if err != nil {
		return err
	}
	if len(list.Manifests) != len(descs) {
		return fmt.Errorf("%d entries read as Docker list, %d as index", len(list.Manifests), len(descs))
	}
	for i, m := range list.Manifests {
		if len(m.Platform.Features) == 0 {
			continue
		}
		if descs[i].Annotations == nil {
			descs[i].Annotations = map[string]string{}
		}
		descs[i].Annotations[FeaturesAnnotation] = strings.Join(m.Platform.Features, ",")
	}
	return nil
}

// Bytes is the list as saved and pushed. A Docker manifest list is written
// in Docker's own shape: it has no artifactType, subject, annotations or
// data, and an entry's features (FeaturesAnnotation) become
// platform.features.
func (l *ManifestList) Bytes() ([]byte, error) {
	if l.MediaType == manifest.DockerV2ListMediaType {
		descs := make([]manifest.Schema2ManifestDescriptor, len(l.Index.Manifests))
		for i, m := range l.Index.Manifests {
			descs[i].MediaType, descs[i].Size, descs[i].Digest = m.MediaType, m.Size, m.Digest
			descs[i].URLs = slices.Clone(m.URLs)
			if p := m.Platform; p != nil {
				descs[i].Platform = manifest.Schema2PlatformSpec{
					Architecture: p.Architecture, OS: p.OS, OSVersion: p.OSVersion,
					OSFeatures: slices.Clone(p.OSFeatures), Variant: p.Variant,
				}
			}
			if f := m.Annotations[FeaturesAnnotation]; f != "" {
				descs[i].Platform.Features = strings.Split(f, ",")
			}
		}
		return json.Marshal(manifest.Schema2ListFromComponents(descs))
	}
	idx := l.Index
	idx.SchemaVersion, idx.MediaType = 2, l.MediaType
	if idx.Manifests == nil {
		idx.Manifests = []ocispec.Descriptor{}
	}
	return json.Marshal(struct {
		specs.Versioned
		MediaType    string               `json:"mediaType,omitempty"`
		ArtifactType string               `json:"artifactType,omitempty"`
		Manifests    []ocispec.Descriptor `json:"manifests"`
		Subject      *ocispec.Descriptor  `json:"subject,omitempty"`
		Annotations  map[string]string    `json:"annotations,omitempty"`
	}{idx.Versioned, idx.MediaType, idx.ArtifactType, idx.Manifests, idx.Subject, idx.Annotations})
}

// Add puts an instance in the list (replacing one with the same digest,
// keeping its place) and records where it is read from.
func (l *ManifestList) Add(d ocispec.Descriptor, ref string) {
	if l.Instances == nil {
		l.Instances = map[digest.Digest]string{}
	}
	l.Instances[d.Digest] = ref
	for i, m := range l.Index.Manifests {
		if m.Digest == d.Digest {
			l.Index.Manifests[i] = d
			return
		}
	}
	l.Index.Manifests = append(l.Index.Manifests, d)
}

// ReplacePlatform puts d in the list in place of every instance for the
// same platform (a rebuild for a platform replaces its old image).
func (l *ManifestList) ReplacePlatform(d ocispec.Descriptor, ref string) {
	if d.Platform != nil {
		p := platform.FromOCI(*d.Platform)
		l.Index.Manifests = slices.DeleteFunc(l.Index.Manifests, func(m ocispec.Descriptor) bool {
			if m.Digest == d.Digest || m.Platform == nil || platform.FromOCI(*m.Platform) != p {
				return false
			}
			delete(l.Instances, m.Digest)
			return true
		})
	}
	l.Add(d, ref)
}

// Remove drops the instance d; it reports whether the list had it.
func (l *ManifestList) Remove(d digest.Digest) bool {
	n := len(l.Index.Manifests)
	l.Index.Manifests = slices.DeleteFunc(l.Index.Manifests, func(m ocispec.Descriptor) bool { return m.Digest == d })
	delete(l.Instances, d)
	return len(l.Index.Manifests) < n
}

// Platforms are the platforms of the list's instances, in order.
func (l *ManifestList) Platforms() []platform.Platform {
	var out []platform.Platform
	for _, m := range l.Index.Manifests {
		if m.Platform != nil {
			out = append(out, platform.FromOCI(*m.Platform))
		}
	}
	return out
}

// Choose returns the instance for p: the first whose platform matches
// (variants as platform.Matches says, an exact variant first).
func (l *ManifestList) Choose(p platform.Platform) (ocispec.Descriptor, bool) {
	var loose *ocispec.Descriptor
	for i, m := range l.Index.Manifests {
		if m.Platform == nil {
			continue
		}
		have := platform.FromOCI(*m.Platform)
		if have == platform.Normalize(p) {
			return m, true
		}
		if loose == nil && p.Matches(have) {
			loose = &l.Index.Manifests[i]
		}
	}
	if loose != nil {
		return *loose, true
	}
	return ocispec.Descriptor{}, false
}

// Save writes the list: over its image when it has an ID, else as a new
// image; names are added to it (taken from any image holding them). It
// returns the list's image ID.
func (l *ManifestList) Save(s storage.Store, names ...string) (string, error) {
	man, err := l.Bytes()
	if err != nil {
		return "", err
	}
	if l.ID == "" {
		img, err := s.CreateImage("", nil, "", "", &storage.ImageOptions{})
		if err != nil {
			return "", fmt.Errorf("creating manifest list: %w", err)
		}
		l.ID = img.ID
	}
	refs := map[digest.Digest]string{"": l.ID}
	for k, v := range l.Instances {
		refs[k] = v
	}
	inst, err := json.Marshal(refs)
	if err != nil {
		return "", err
	}
	// instances.json first: an image with a list "manifest" but no
	// instances item would read as a pulled image.
	if err := s.SetImageBigData(l.ID, instancesKey, inst, nil); err != nil {
		return "", fmt.Errorf("saving manifest list %s: %w", shortID(l.ID), err)
	}
	if err := s.SetImageBigData(l.ID, storage.ImageDigestBigDataKey, man, manifest.Digest); err != nil {
		return "", fmt.Errorf("saving manifest list %s: %w", shortID(l.ID), err)
	}
	if len(names) > 0 {
		if err := s.AddNames(l.ID, names); err != nil {
			return "", fmt.Errorf("naming manifest list %s: %w", shortID(l.ID), err)
		}
		l.Names = appendNew(l.Names, names...)
	}
	return l.ID, nil
}

func appendNew(have []string, add ...string) []string {
	for _, a := range add {
		if !slices.Contains(have, a) {
			have = append(have, a)
		}
	}
	return have
}

// LocalRef is the reference an instance that is the local image id is
// recorded under (as buildah records the images it adds).
func LocalRef(s storage.Store, id string) (string, error) {
	ref, err := storageTransport.Transport.NewStoreReference(s, nil, id)
	if err != nil {
		return "", err
	}
	return transports.ImageName(ref), nil
}

// InstanceImage finds the local image of instance d of l: the image its
// reference names when that is this store's, else any local image with
// that manifest digest. It returns nil when the store has none (an
// instance added from a registry).
func InstanceImage(s storage.Store, l *ManifestList, d digest.Digest) (*storage.Image, error) {
	if ref := l.Instances[d]; strings.HasPrefix(ref, storageTransport.Transport.Name()+":") {
		if r, err := storageTransport.Transport.ParseStoreReference(s, strings.TrimPrefix(ref, storageTransport.Transport.Name()+":")); err == nil {
			if img, err := storageTransport.Transport.GetStoreImage(s, r); err == nil && slices.Contains(img.Digests, d) {
				return img, nil
			}
		}
	}
	imgs, err := s.ImagesByDigest(d)
	if err != nil && !errors.Is(err, storage.ErrImageUnknown) {
		return nil, err
	}
	for _, img := range imgs {
		if !IsList(s, img) {
			return img, nil
		}
	}
	return nil, nil
}
