package image

// Plain names: the local store first, then registries as the pull policy
// says. Pulled images land in the store, so their layers are kept and a
// later build finds them without fetching anything.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/builder-dev/builder/internal/store"
	"github.com/builder-dev/builder/platform"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	storageTransport "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
)

// PullPolicy says when a plain name is pulled from a registry.
type PullPolicy int

const (
	PullMissing PullPolicy = iota // only when not in the local store (default)
	PullAlways                    // every time (digest references: only when missing)
	PullNever                     // never: local images only
	PullNewer                     // when the registry's manifest differs from the local image's
)

func (p PullPolicy) String() string {
	return [...]string{"missing", "always", "never", "newer"}[p]
}

// ParsePullPolicy parses a --pull value as buildah does: always (true),
// missing (false, ifmissing), never, newer (ifnewer).
func ParsePullPolicy(s string) (PullPolicy, error) {
	switch strings.ToLower(s) {
	case "missing", "ifmissing", "false", "":
		return PullMissing, nil
	case "always", "true":
		return PullAlways, nil
	case "never":
		return PullNever, nil
	case "newer", "ifnewer":
		return PullNewer, nil
	}
	return 0, fmt.Errorf("unknown pull policy %q (want always, missing, never or newer)", s)
}

// Puller copies images from registries into the local store.
type Puller interface {
	// Pull resolves name (short names through registries.conf), copies
	// the image for p into the store and returns the stored image's ID.
	Pull(ctx context.Context, name string, p platform.Platform) (string, error)
	// Changed reports whether the registry's manifest for name differs
	// from all the local digests.
	Changed(ctx context.Context, name string, p platform.Platform, local []digest.Digest) (bool, error)
}

// resolveName resolves a plain name or a docker:// reference (with a
// Puller) through the store, pulling as r.Pull says.
func (r *Resolver) resolveName(ctx context.Context, ref string, p platform.Platform) (types.ImageReference, error) {
	local := ref
	if rest, ok := strings.CutPrefix(ref, "docker://"); ok {
		n, err := reference.ParseNormalizedNamed(rest)
		if err != nil {
			return nil, fmt.Errorf("parsing image reference %q: %w", ref, err)
		}
		local = reference.TagNameOnly(n).String()
	}
	st, err := r.localStore(ref)
	if err != nil {
		return nil, err
	}
	m, err := store.Find(st, r.Sys, local)
	found := err == nil
	if err != nil && !errors.Is(err, storage.ErrImageUnknown) {
		return nil, err
	}
	mismatch := found && !r.platformMatches(st, m.Image.ID, p)
	pull := false
	// A short name found as "localhost/NAME" is a local build: never pulled.
	// A manifest list is a local thing (made by a build or `manifest
	// create`): a pull would take its name away.
	canPull := pullable(local) && (!found || m.Name == "" || pullable(m.Name)) && !(found && store.IsList(st, m.Image))
	if r.Puller != nil && r.Pull != PullNever && canPull {
		switch {
		case !found || mismatch:
			pull = true
		case r.Pull == PullAlways:
			pull = !digested(local) // a digest names the same image everywhere
		case r.Pull == PullNewer:
			changed, err := r.Puller.Changed(ctx, ref, p, m.Image.Digests)
			if err != nil {
				r.warn("cannot check the registry for a newer image; using the local one", "image", ref, "error", err)
			}
			pull = err == nil && changed
		}
	}
	if pull {
		id, err := r.pullOnce(ctx, ref, p)
		switch {
		case err == nil:
			return storageRefByID(st, id)
		case mismatch:
			r.warn("no image for the requested platform could be pulled; using the local one", "image", ref, "platform", p.String(), "error", err)
		default:
			return nil, err
		}
	}
	if !found && r.Direct && pullable(local) {
		n, err := reference.ParseNormalizedNamed(local)
		if err != nil {
			return nil, fmt.Errorf("parsing image reference %q: %w", ref, err)
		}
		return docker.NewReference(reference.TagNameOnly(n))
	}
	if !found {
		if r.Puller == nil || r.Pull == PullNever {
			return nil, fmt.Errorf("%w: %s (pull policy %s)", ErrNotKnownLocally, ref, r.Pull)
		}
		return nil, fmt.Errorf("%w: %s (localhost/ names are never pulled)", ErrNotKnownLocally, ref)
	}
	return r.localRef(st, ref, m.Image, p)
}

// pullOnce pulls name for p at most once per resolver (a failure too is
// remembered: a build does not wait through the retries twice).
func (r *Resolver) pullOnce(ctx context.Context, name string, p platform.Platform) (string, error) {
	key := name + "\x00" + p.String()
	r.mu.Lock()
	res, ok := r.pulled[key]
	r.mu.Unlock()
	if ok {
		return res.id, res.err
	}
	id, err := r.Puller.Pull(ctx, name, p)
	if ctx.Err() != nil {
		return id, err
	}
	r.mu.Lock()
	if r.pulled == nil {
		r.pulled = map[string]pullResult{}
	}
	r.pulled[key] = pullResult{id, err}
	r.mu.Unlock()
	return id, err
}

type pullResult struct {
	id  string
	err error
}

// platformMatches reports whether the stored image id is for p (an image
// whose config cannot be read is taken as matching: the load reports it).
func (r *Resolver) platformMatches(st storage.Store, id string, p platform.Platform) bool {
	if l, err := store.LoadList(st, id); err == nil {
		_, ok := l.Choose(p)
		return ok
	}
	info, err := store.Inspect(st, id)
	if err != nil {
		return true
	}
	c := platform.FromOCI(info.Config.Platform)
	return c.IsZero() || p.Matches(c)
}

func (r *Resolver) warn(msg string, args ...any) {
	if r.Log != nil {
		r.Log.Warn(msg, args...)
	}
}

// pullable reports whether name may come from a registry: image IDs and
// names in the "localhost/" namespace, where unqualified local builds
// live, never do.
func pullable(name string) bool {
	if isHexID(name) {
		return false
	}
	n, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return true // let the puller report what is wrong with it
	}
	return reference.Domain(n) != "localhost"
}

func digested(name string) bool {
	n, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return false
	}
	_, ok := n.(reference.Digested)
	return ok
}

func isHexID(s string) bool {
	s = strings.TrimPrefix(s, "sha256:")
	if len(s) < 12 || len(s) > 64 {
		return false
	}
	return strings.Trim(s, "0123456789abcdef") == ""
}

func storageRefByID(s storage.Store, id string) (types.ImageReference, error) {
	ref, err := storageTransport.Transport.NewStoreReference(s, nil, id)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", id, err)
	}
	return ref, nil
}
