package store

import (
	"errors"
	"fmt"
	"strings"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
)

// UnknownImageError says that no local image matches Name. It satisfies
// errors.Is(err, storage.ErrImageUnknown).
type UnknownImageError struct{ Name string }

func (e *UnknownImageError) Error() string { return "image not known: " + e.Name }

// Is makes errors.Is(err, storage.ErrImageUnknown) true.
func (e *UnknownImageError) Is(target error) bool { return target == storage.ErrImageUnknown }

// NormalizeName turns a user-supplied image name into the name stored in
// the local store, with podman's rules: a name without a registry gets the
// "localhost/" prefix, a name without tag or digest gets ":latest", Docker
// Hub names are fully spelled (docker.io/library/alpine:latest), and a
// name with both a tag and a digest keeps only the digest.
func NormalizeName(name string) (reference.Named, error) {
	ref, err := reference.Parse(name)
	if err != nil {
		return nil, fmt.Errorf("invalid image name %q: %w", name, err)
	}
	named, ok := ref.(reference.Named)
	if !ok {
		return nil, fmt.Errorf("invalid image name %q: no repository", name)
	}
	if d := reference.Domain(named); !strings.ContainsAny(d, ".:") && d != "localhost" {
		name = "localhost/" + name
	}
	named, err = reference.ParseNormalizedNamed(name)
	if err != nil {
		return nil, fmt.Errorf("invalid image name %q: %w", name, err)
	}
	if dg, ok := named.(reference.Digested); ok {
		if _, tagged := named.(reference.Tagged); tagged {
			return reference.WithDigest(reference.TrimNamed(named), dg.Digest())
		}
		return named, nil
	}
	return reference.TagNameOnly(named), nil
}

// Match is the result of Find.
type Match struct {
	Image *storage.Image
	// Name is the image's name that matched, "" when the image was found
	// by ID or digest.
	Name string
}

// LookupImage finds a local image by name or ID with podman's rules (see
// Find), using the default registries.conf for short-name candidates.
func LookupImage(s storage.Store, nameOrID string) (*storage.Image, error) {
	m, err := Find(s, nil, nameOrID)
	if err != nil {
		return nil, err
	}
	return m.Image, nil
}

// Find resolves nameOrID against the local store as podman does:
//  1. a full image ID, with or without "sha256:";
//  2. the name's short-name candidates in order: "localhost/NAME", aliases
//     and unqualified-search registries from registries.conf (sys), then
//     Docker Hub normalisation; ":latest" is implied; for NAME@DIGEST the
//     image must carry that digest;
//  3. an ID prefix;
//  4. a short name matching the end of a stored repository name with the
//     same tag ("app" finds "quay.io/team/app:latest"); ambiguity is an error.
//
// A miss is an *UnknownImageError.
func Find(s storage.Store, sys *types.SystemContext, nameOrID string) (Match, error) {
	if nameOrID == "" {
		return Match{}, errors.New("empty image name")
	}
	if id, ok := fullID(nameOrID); ok {
		img, err := imageByID(s, id)
		if err != nil || img != nil {
			return Match{Image: img}, err
		}
		return Match{}, &UnknownImageError{Name: nameOrID}
	}

	candidates, _ := localCandidates(sys, nameOrID) // invalid names fall through to the ID-prefix rule
	if named, err := reference.ParseDockerRef(nameOrID); err == nil {
		candidates = append(candidates, named)
	}
	for _, c := range candidates {
		m, err := findCandidate(s, c)
		if err != nil || m.Image != nil {
			return m, err
		}
	}

	if isHex(nameOrID) {
		img, err := imageByID(s, nameOrID)
		if err != nil || img != nil {
			return Match{Image: img}, err
		}
	}

	if m, err := findBySuffix(s, nameOrID); err != nil || m.Image != nil {
		return m, err
	}
	return Match{}, &UnknownImageError{Name: nameOrID}
}

// isShortName reports whether named has no registry part (as written, before
// Docker Hub normalisation): "app", "team/app:v1".
func isShortName(named reference.Named) bool {
	d := reference.Domain(named)
	return !strings.ContainsAny(d, ".:") && d != "localhost"
}

// localCandidates lists the fully-qualified names a user-supplied name may
// mean locally, in podman's order: a qualified name is itself (":latest"
// implied); a short name is its registries.conf alias, then
// "localhost/NAME", then NAME under each unqualified-search registry.
func localCandidates(sys *types.SystemContext, name string) ([]reference.Named, error) {
	ref, err := reference.Parse(name)
	if err != nil {
		return nil, err
	}
	named, ok := ref.(reference.Named)
	if !ok {
		return nil, fmt.Errorf("%q is not a named reference", name)
	}
	if !isShortName(named) {
		n, err := reference.ParseNormalizedNamed(name)
		if err != nil {
			return nil, err
		}
		return []reference.Named{reference.TagNameOnly(n)}, nil
	}
	// withRef re-applies the tag and digest the user gave to a repository.
	withRef := func(repo reference.Named) (reference.Named, error) {
		var err error
		if t, ok := named.(reference.Tagged); ok {
			if repo, err = reference.WithTag(repo, t.Tag()); err != nil {
				return nil, err
			}
		}
		if d, ok := named.(reference.Digested); ok {
			if repo, err = reference.WithDigest(repo, d.Digest()); err != nil {
				return nil, err
			}
		}
		return reference.TagNameOnly(repo), nil
	}
	var out []reference.Named
	alias, _, err := sysregistriesv2.ResolveShortNameAlias(sys, reference.TrimNamed(named).String())
	if err != nil {
		return nil, err
	}
	if alias != nil {
		if a, err := withRef(alias); err == nil {
			out = append(out, a)
		}
	}
	regs, err := sysregistriesv2.UnqualifiedSearchRegistries(sys)
	if err != nil {
		return nil, err
	}
	for _, reg := range append([]string{"localhost"}, regs...) {
		repo, err := reference.ParseNormalizedNamed(reg + "/" + reference.TrimNamed(named).String())
		if err != nil {
			return nil, fmt.Errorf("unqualified-search registry %q: %w", reg, err)
		}
		c, err := withRef(repo)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// findCandidate looks up one fully-qualified candidate name.
func findCandidate(s storage.Store, c reference.Named) (Match, error) {
	dg, digested := c.(reference.Digested)
	if !digested {
		img, err := s.Image(c.String())
		if errors.Is(err, storage.ErrImageUnknown) {
			return Match{}, nil
		}
		if err != nil {
			return Match{}, fmt.Errorf("looking up %s: %w", c, err)
		}
		return Match{Image: img, Name: c.String()}, nil
	}
	// NAME@DIGEST: the image must carry the digest and a name in NAME's repository.
	if img, err := s.Image(c.String()); err == nil {
		return Match{Image: img, Name: c.String()}, nil
	}
	imgs, err := s.ImagesByDigest(dg.Digest())
	if err != nil && !errors.Is(err, storage.ErrImageUnknown) {
		return Match{}, fmt.Errorf("looking up digest %s: %w", dg.Digest(), err)
	}
	repo := reference.TrimNamed(c).String()
	for _, img := range imgs {
		for _, n := range img.Names {
			if named, err := reference.ParseNormalizedNamed(n); err == nil && reference.TrimNamed(named).String() == repo {
				return Match{Image: img}, nil
			}
		}
	}
	return Match{}, nil
}

// findBySuffix implements rule 4 of Find.
func findBySuffix(s storage.Store, name string) (Match, error) {
	ref, err := reference.Parse(name)
	if err != nil {
		return Match{}, nil
	}
	named, ok := ref.(reference.Named)
	if !ok || !isShortName(named) {
		return Match{}, nil
	}
	if _, digested := named.(reference.Digested); digested {
		return Match{}, nil
	}
	tag := "latest"
	if t, ok := named.(reference.Tagged); ok {
		tag = t.Tag()
	}
	suffix := "/" + named.Name()
	imgs, err := s.Images()
	if err != nil {
		return Match{}, fmt.Errorf("listing images: %w", err)
	}
	var found []Match
	for i := range imgs {
		for _, n := range imgs[i].Names {
			sn, err := reference.ParseNormalizedNamed(n)
			if err != nil {
				continue
			}
			t, ok := sn.(reference.Tagged)
			if !ok || t.Tag() != tag || !strings.HasSuffix(sn.Name(), suffix) {
				continue
			}
			if len(found) == 0 || found[len(found)-1].Image.ID != imgs[i].ID {
				found = append(found, Match{Image: &imgs[i], Name: n})
			}
		}
	}
	switch len(found) {
	case 0:
		return Match{}, nil
	case 1:
		return found[0], nil
	default:
		names := make([]string, len(found))
		for i, m := range found {
			names[i] = m.Name
		}
		return Match{}, fmt.Errorf("short name %q is ambiguous: it matches %s; use a full name", name, strings.Join(names, ", "))
	}
}

// imageByID returns the image with this ID or unique ID prefix, nil if none.
func imageByID(s storage.Store, id string) (*storage.Image, error) {
	img, err := s.Image(id)
	if errors.Is(err, storage.ErrImageUnknown) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up image %s: %w", id, err)
	}
	if !strings.HasPrefix(img.ID, id) {
		return nil, nil // matched a name that happens to be hex, not an ID
	}
	return img, nil
}

// fullID reports whether s is a full image ID ("sha256:" prefix optional).
func fullID(s string) (string, bool) {
	s = strings.TrimPrefix(s, "sha256:")
	return s, len(s) == 64 && isHex(s)
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
