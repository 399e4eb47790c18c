package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/storage"
)

// Summary is one local image, as `images` lists it.
type Summary struct {
	ID       string
	Names    []string
	Digest   digest.Digest // digest of the image's manifest
	Created  time.Time
	Size     int64 // bytes of layers and metadata; -1 if it could not be computed
	ReadOnly bool  // from a read-only additional image store
}

// List returns all local images, newest first.
func List(s storage.Store) ([]Summary, error) {
	imgs, err := s.Images()
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	out := make([]Summary, 0, len(imgs))
	for _, img := range imgs {
		size, err := s.ImageSize(img.ID)
		if err != nil {
			size = -1 // e.g. a layer removed under us; still list the image
		}
		out = append(out, Summary{
			ID:       img.ID,
			Names:    slices.Clone(img.Names),
			Digest:   img.Digest,
			Created:  img.Created,
			Size:     size,
			ReadOnly: img.ReadOnly,
		})
	}
	slices.SortStableFunc(out, func(a, b Summary) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Tag adds names to the image nameOrID and returns them normalised
// (NormalizeName). A name held by another image moves to this one.
func Tag(s storage.Store, nameOrID string, names ...string) ([]string, error) {
	if len(names) == 0 {
		return nil, errors.New("no new names given")
	}
	img, err := LookupImage(s, nameOrID)
	if err != nil {
		return nil, err
	}
	normalized := make([]string, 0, len(names))
	for _, n := range names {
		named, err := NormalizeName(n)
		if err != nil {
			return nil, err
		}
		if _, ok := named.(reference.Digested); ok {
			return nil, fmt.Errorf("tag %q: an image cannot be tagged with a digest", n)
		}
		normalized = append(normalized, named.String())
	}
	if err := s.AddNames(img.ID, normalized); err != nil {
		return nil, fmt.Errorf("tagging image %s: %w", img.ID, err)
	}
	return normalized, nil
}

// RemoveReport says what Remove did.
type RemoveReport struct {
	Untagged []string // names removed
	Deleted  string   // ID of the deleted image, "" if it was only untagged
}

// Remove removes an image the way `podman rmi` does. Given one of several
// names, it only untags that name. Otherwise the image is deleted, with
// all its names, and its layers that no other image uses. Deleting by ID
// an image that has several names, or an image that containers use, needs
// force; force also deletes those containers.
func Remove(s storage.Store, nameOrID string, force bool) (RemoveReport, error) {
	m, err := Find(s, nil, nameOrID)
	if err != nil {
		return RemoveReport{}, err
	}
	img := m.Image
	if img.ReadOnly {
		return RemoveReport{}, fmt.Errorf("image %s is in a read-only image store", img.ID)
	}
	if m.Name != "" && len(img.Names) > 1 {
		if err := s.RemoveNames(img.ID, []string{m.Name}); err != nil {
			return RemoveReport{}, fmt.Errorf("untagging %s: %w", m.Name, err)
		}
		return RemoveReport{Untagged: []string{m.Name}}, nil
	}
	if m.Name == "" && len(img.Names) > 1 && !force {
		return RemoveReport{}, fmt.Errorf("image %s has several names (%s): remove them by name, or force", shortID(img.ID), strings.Join(img.Names, ", "))
	}

	ctrs, err := s.Containers()
	if err != nil {
		return RemoveReport{}, fmt.Errorf("listing containers: %w", err)
	}
	var users []string
	for _, c := range ctrs {
		if c.ImageID == img.ID {
			users = append(users, c.ID)
		}
	}
	if len(users) > 0 && !force {
		return RemoveReport{}, fmt.Errorf("image %s is in use by %d container(s) (%s): %w", shortID(img.ID), len(users), shortIDs(users), storage.ErrImageUsedByContainer)
	}
	for _, id := range users {
		if err := s.DeleteContainer(id); err != nil {
			return RemoveReport{}, fmt.Errorf("removing container %s that uses image %s: %w", shortID(id), shortID(img.ID), err)
		}
	}
	if _, err := s.DeleteImage(img.ID, true); err != nil {
		return RemoveReport{}, fmt.Errorf("removing image %s: %w", shortID(img.ID), err)
	}
	return RemoveReport{Untagged: slices.Clone(img.Names), Deleted: img.ID}, nil
}

// ImageInfo is what Inspect reports.
type ImageInfo struct {
	ID    string   `json:"Id"`
	Names []string `json:"Names"`
	// Digest is the digest of the image's current top-level manifest;
	// Digests are all manifest digests the store knows for the image.
	Digest       digest.Digest   `json:"Digest"`
	Digests      []digest.Digest `json:"Digests,omitempty"`
	Created      time.Time       `json:"Created"`
	Size         int64           `json:"Size"`
	TopLayer     string          `json:"TopLayer,omitempty"`
	ManifestType string          `json:"ManifestType"`
	// Manifest is the image's own manifest (the instance for this
	// platform when the store holds a manifest list).
	Manifest json.RawMessage `json:"Manifest"`
	// Config is the parsed image config.
	Config dockerspec.DockerOCIImage `json:"Config"`
}

// Inspect returns the metadata, manifest and config of a local image.
func Inspect(s storage.Store, nameOrID string) (*ImageInfo, error) {
	img, err := LookupImage(s, nameOrID)
	if err != nil {
		return nil, err
	}
	if IsList(s, img) {
		return nil, fmt.Errorf("%s is a manifest list (ID %s), not an image: `manifest inspect` shows it", nameOrID, shortID(img.ID))
	}
	man, mt, top, err := imageManifest(s, img)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", shortID(img.ID), err)
	}
	parsed, err := manifest.FromBlob(man, mt)
	if err != nil {
		return nil, fmt.Errorf("image %s: parsing manifest: %w", shortID(img.ID), err)
	}
	info := &ImageInfo{
		ID:           img.ID,
		Names:        slices.Clone(img.Names),
		Digest:       top,
		Digests:      slices.Clone(img.Digests),
		Created:      img.Created,
		TopLayer:     img.TopLayer,
		ManifestType: mt,
		Manifest:     man,
	}
	if info.Names == nil {
		info.Names = []string{}
	}
	if info.Size, err = s.ImageSize(img.ID); err != nil {
		info.Size = -1
	}
	cfgDigest := parsed.ConfigInfo().Digest
	cfg, err := s.ImageBigData(img.ID, cfgDigest.String())
	if err != nil {
		return nil, fmt.Errorf("image %s: reading config %s: %w", shortID(img.ID), cfgDigest, err)
	}
	if err := json.Unmarshal(cfg, &info.Config); err != nil {
		return nil, fmt.Errorf("image %s: parsing config: %w", shortID(img.ID), err)
	}
	return info, nil
}

// imageManifest returns the manifest of img for this platform, its MIME
// type and the digest of the image's top-level manifest. Like
// containers/image, it reads the "manifest" item, which the latest write of
// the image set; images stored before that item existed have only
// per-digest items.
func imageManifest(s storage.Store, img *storage.Image) ([]byte, string, digest.Digest, error) {
	man, err := s.ImageBigData(img.ID, storage.ImageDigestBigDataKey)
	if err != nil && img.Digest != "" {
		man, err = s.ImageBigData(img.ID, storage.ImageDigestManifestBigDataNamePrefix+"-"+img.Digest.String())
	}
	if err != nil {
		return nil, "", "", fmt.Errorf("reading manifest: %w", err)
	}
	top, err := manifest.Digest(man)
	if err != nil {
		return nil, "", "", err
	}
	mt := manifest.GuessMIMEType(man)
	if !manifest.MIMETypeIsMultiImage(mt) {
		return man, mt, top, nil
	}
	list, err := manifest.ListFromBlob(man, mt)
	if err != nil {
		return nil, "", "", fmt.Errorf("parsing manifest list: %w", err)
	}
	inst, err := list.ChooseInstance(nil)
	if err != nil {
		return nil, "", "", err
	}
	man, err = s.ImageBigData(img.ID, storage.ImageDigestManifestBigDataNamePrefix+"-"+inst.String())
	if err != nil {
		return nil, "", "", fmt.Errorf("reading manifest %s: %w", inst, err)
	}
	return man, manifest.GuessMIMEType(man), top, nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func shortIDs(ids []string) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = shortID(id)
	}
	return strings.Join(s, ", ")
}
