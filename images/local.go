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
	list, err := store.List(s.s)
	if err != nil || len(names) == 0 {
		return list, err
	}
	want := map[string]bool{}
	for _, n := range names {
		img, err := store.LookupImage(s.s, n)
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
func (s *Store) Inspect(name string) (*Info, error) { return store.Inspect(s.s, name) }

// Tag adds names to a local image ("app:v2" is stored as
// "localhost/app:v2", as podman does) and returns them normalised.
func (s *Store) Tag(name string, tags ...string) ([]string, error) {
	return store.Tag(s.s, name, tags...)
}

// Remove removes a name or an image as `podman rmi` does: one of several
// names is only untagged; force deletes an image by ID that has several
// names, and the containers that use it.
func (s *Store) Remove(name string, force bool) (Removed, error) {
	return store.Remove(s.s, name, force)
}
