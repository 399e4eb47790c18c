package images

// Local image management: what `images`, `inspect`, `tag` and `rmi` do,
// with podman's name rules (internal/store holds the details).

import (
	"github.com/builder-dev/builder/internal/store"
	"go.podman.io/storage"
)

// Summary is one local image as List reports it.
type Summary = store.Summary

// Info is what Inspect reports: metadata, manifest and parsed config.
type Info = store.ImageInfo

// Removed says what Remove did.
type Removed = store.RemoveReport

// ErrImageUnknown is returned (wrapped) when a name or ID matches no image.
var ErrImageUnknown = storage.ErrImageUnknown

// List returns the local images, newest first; with names, only the
// images they name (each must exist).
func (s *Store) List(names ...string) ([]Summary, error) {
	list, err := store.List(s.st())
	if err != nil || len(names) == 0 {
		return list, err
	}
	want := map[string]bool{}
	for _, n := range names {
		img, err := store.LookupImage(s.st(), n)
		if err != nil {
			return nil, err
		}
		want[img.ID] = true
	}
	var out []Summary
	for _, im := range list {
		if want[im.ID] {
			out = append(out, im)
		}
	}
	return out, nil
}

// Inspect returns a local image's metadata, manifest and config.
func (s *Store) Inspect(name string) (*Info, error) { return store.Inspect(s.st(), name) }

// Tag adds names to a local image ("app:v2" is stored as
// "localhost/app:v2", as podman does) and returns them normalised.
func (s *Store) Tag(name string, tags ...string) ([]string, error) {
	return store.Tag(s.st(), name, tags...)
}

// Remove removes a name or an image as `podman rmi` does: one of several
// names is only untagged; force deletes an image by ID that has several
// names, and the containers that use it.
func (s *Store) Remove(name string, force bool) (Removed, error) {
	return store.Remove(s.st(), name, force)
}

// ListInstances are the IDs of the local images that some manifest list of
// the store names (a multi-platform build's per-platform images).
func (s *Store) ListInstances() (map[string]bool, error) {
	imgs, err := s.st().Images()
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for i := range imgs {
		if !store.IsList(s.st(), &imgs[i]) {
			continue
		}
		l, err := store.LoadList(s.st(), imgs[i].ID)
		if err != nil {
			continue
		}
		for _, d := range l.Index.Manifests {
			if img, err := store.InstanceImage(s.st(), l, d.Digest); err == nil && img != nil {
				out[img.ID] = true
			}
		}
	}
	return out, nil
}

// Dangling are the images with no name that no manifest list names: what
// `rmi --prune` removes.
func (s *Store) Dangling() ([]Summary, error) {
	list, err := s.List()
	if err != nil {
		return nil, err
	}
	inst, err := s.ListInstances()
	if err != nil {
		return nil, err
	}
	var out []Summary
	for _, im := range list {
		if len(im.Names) == 0 && !inst[im.ID] {
			out = append(out, im)
		}
	}
	return out, nil
}

// Labels are a local image's config labels (none for a manifest list).
func (s *Store) Labels(id string) map[string]string {
	info, err := store.Inspect(s.st(), id)
	if err != nil {
		return nil
	}
	return info.Config.Config.Labels
}
