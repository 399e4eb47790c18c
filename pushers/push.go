// Package pushers delivers built images to their destinations: the local
// containers/storage store (so podman and buildah see them), OCI layouts
// and archives, docker-archive files and registries, all through
// containers/image's copy.Image.
package pushers

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/internal/store"
	"github.com/builder-dev/builder/layer"
	"github.com/builder-dev/builder/registry"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/signature"
	storageTransport "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
)

// Options configure Push.
type Options struct {
	// Store is the local store; required for store destinations.
	Store storage.Store
	// Format is the manifest format for the store and registries. OCI
	// layouts and archives always get OCI manifests and docker-archive
	// files Docker schema 2, the only formats they hold.
	Format image.Format
	// Sys configures containers/image (auth, TLS, registries.conf); may be nil.
	Sys *types.SystemContext
	// Tags are extra names given to the image in the store after the push
	// (normalised like podman: "app:v2" -> "localhost/app:v2"). They apply
	// to store destinations only and are ignored for the others.
	Tags []string
	// RemoveSignatures drops signatures (our images have none; kept for
	// parity with copy.Options).
	RemoveSignatures bool
	// ReportWriter, if set, receives containers/image progress: a bar per
	// blob on a TTY, one "Copying blob ..." line per blob otherwise.
	ReportWriter io.Writer
	// Variants, when set, makes each layer bound for a registry or an OCI
	// layout compressed once in its life: see compressLayers. Without it
	// containers/image compresses uncompressed layers on every push.
	Variants *registry.Variants
	// Compression of layers compressed for a push (default gzip).
	Compression Compression
	// Retry retries registry pushes that fail for a transient reason.
	Retry registry.Retrier
	// Trees, when set, gives the store commit the layer trees the build
	// wrote, moved into the store rather than extracted from the tar again.
	Trees Trees
}

// kind is the class of a destination.
type kind int

const (
	kindStore kind = iota
	kindOCI        // oci:, oci-archive:
	kindDockerArchive
	kindRegistry
)

// destination is a parsed push destination.
type destination struct {
	kind kind
	ref  types.ImageReference // all kinds but kindStore
	name reference.Named      // kindStore: the normalised name, nil for none
	id   string               // kindStore: the image ID the user gave ("@ID"), "" if none
}

// Push writes img to dest and returns the digest of the manifest written.
//
// Destinations: "containers-storage:NAME" or a plain NAME (the local store;
// short names normalised as podman does, "app" -> "localhost/app:latest"),
// "containers-storage:", "containers-storage:@ID" or "" (the store,
// unnamed; an ID given must be the config digest's hex), "oci:DIR[:TAG]",
// "oci-archive:FILE[:TAG]", "docker-archive:FILE[:REF]", "docker://REF".
//
// In the store, the image ID is the config digest (as buildah and podman
// compute it), names held by other images move to this one, and o.Tags are
// added as further names without copying again.
func Push(ctx context.Context, img *image.Image, dest string, o Options) (digest.Digest, error) {
	dst, err := parseDest(dest)
	if err != nil {
		return "", err
	}
	k := dst.kind
	if k == kindStore && o.Store == nil {
		return "", fmt.Errorf("push to %s: no local store", displayDest(dest))
	}
	format := o.Format
	switch k {
	case kindOCI:
		format = image.FormatOCI
	case kindDockerArchive:
		format = image.FormatDocker
	}
	if (k == kindRegistry || k == kindOCI) && o.Variants != nil {
		if img, err = compressLayers(ctx, img, format, o.Compression, o.Variants); err != nil {
			return "", fmt.Errorf("push to %s: %w", displayDest(dest), err)
		}
	}
	if k == kindStore {
		img = rawLayers(img)
		if err := PreloadLayers(ctx, o.Store, img.Layers, o.Trees); err != nil {
			return "", fmt.Errorf("push to %s: %w", displayDest(dest), err)
		}
	}
	src, err := newBuiltRef(img, format)
	if err != nil {
		return "", fmt.Errorf("push to %s: %w", displayDest(dest), err)
	}
	if k == kindRegistry {
		return pushRegistry(ctx, src, dst.ref, format, o)
	}
	destRef, tags := dst.ref, []string(nil)
	if k == kindStore {
		if destRef, tags, err = storeTarget(o, dst, src.cfgDigest); err != nil {
			return "", fmt.Errorf("push to %s: %w", displayDest(dest), err)
		}
		if done, err := alreadyStored(o.Store, src, dst, tags); done || err != nil {
			if err != nil {
				return "", fmt.Errorf("push to %s: %w", displayDest(dest), err)
			}
			return src.manDigest, nil
		}
	}

	policy, err := signature.NewPolicyContext(&signature.Policy{
		Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()},
	})
	if err != nil {
		return "", err
	}
	defer policy.Destroy() //nolint:errcheck // Destroy of an in-memory policy cannot fail meaningfully

	copied, err := copy.Image(ctx, policy, destRef, src, &copy.Options{
		RemoveSignatures:      o.RemoveSignatures,
		ReportWriter:          o.ReportWriter,
		SourceCtx:             o.Sys,
		DestinationCtx:        o.Sys,
		ForceManifestMIMEType: format.ManifestMediaType(),
	})
	if err != nil {
		return "", fmt.Errorf("push to %s: %w", displayDest(dest), err)
	}
	d, err := manifest.Digest(copied)
	if err != nil {
		return "", fmt.Errorf("push to %s: digesting the written manifest: %w", displayDest(dest), err)
	}
	if len(tags) > 0 {
		if err := o.Store.AddNames(src.cfgDigest.Encoded(), tags); err != nil {
			return "", fmt.Errorf("tagging image %s: %w", src.cfgDigest.Encoded()[:12], err)
		}
	}
	return d, nil
}

// storeTarget returns the storage reference for a store destination, with
// the image ID set to the config digest (the ID buildah and podman compute
// and the one we print), and the normalised extra names from o.Tags.
func storeTarget(o Options, dst destination, cfgDigest digest.Digest) (types.ImageReference, []string, error) {
	id := cfgDigest.Encoded()
	if dst.id != "" && dst.id != id {
		return nil, nil, fmt.Errorf("the image ID is its config digest %s, not %s", id, dst.id)
	}
	ref, err := storageTransport.Transport.NewStoreReference(o.Store, dst.name, id)
	if err != nil {
		return nil, nil, err
	}
	var tags []string
	for _, t := range o.Tags {
		n, err := storeName(t)
		if err != nil {
			return nil, nil, err
		}
		if n == nil {
			return nil, nil, fmt.Errorf("tag %q: empty name", t)
		}
		tags = append(tags, n.String())
	}
	return ref, tags, nil
}

// parseDest classifies dest and parses it.
func parseDest(dest string) (destination, error) {
	name, rest, hasTransport := strings.Cut(dest, ":")
	k := kindStore
	switch {
	case !hasTransport:
		return storeDest(dest)
	case name == "containers-storage":
		if strings.HasPrefix(rest, "[") {
			return destination{}, fmt.Errorf("destination %q: store specifiers are not supported; use --root, --runroot and --storage-driver", dest)
		}
		return storeDest(rest)
	case name == "oci" || name == "oci-archive":
		k = kindOCI
	case name == "docker-archive":
		k = kindDockerArchive
	case name == "docker":
		k = kindRegistry
	case transports.Get(name) != nil:
		return destination{}, fmt.Errorf("destination %q: unsupported transport %q (use docker://, oci:, oci-archive:, docker-archive: or containers-storage:)", dest, name)
	default: // "app:v1", "localhost:5000/app": a store name
		return storeDest(dest)
	}
	ref, err := alltransports.ParseImageName(dest)
	if err != nil {
		return destination{}, fmt.Errorf("destination %q: %w", dest, err)
	}
	return destination{kind: k, ref: ref}, nil
}

// storeDest parses "NAME", "NAME@ID" or "@ID".
func storeDest(name string) (destination, error) {
	var id string
	if i := strings.LastIndex(name, "@"); i >= 0 && isImageID(name[i+1:]) {
		name, id = name[:i], name[i+1:]
	}
	named, err := storeName(name)
	if err != nil {
		return destination{}, err
	}
	return destination{kind: kindStore, name: named, id: id}, nil
}

// isImageID reports whether s is 64 lower-case hex digits.
func isImageID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// storeName normalises a store name; "" means no name (nil).
func storeName(name string) (reference.Named, error) {
	if name == "" {
		return nil, nil
	}
	named, err := store.NormalizeName(name)
	if err != nil {
		return nil, err
	}
	if _, ok := named.(reference.Digested); ok {
		return nil, fmt.Errorf("image name %q: a stored image cannot be named with a digest", name)
	}
	return named, nil
}

func displayDest(dest string) string {
	if dest == "" {
		return "containers-storage"
	}
	return dest
}

// rawLayers gives the store the uncompressed scratch copies of layers
// compressed in this build: containers/storage would only decompress them
// again, and keeps uncompressed layers (as it does for buildah) anyway.
func rawLayers(img *image.Image) *image.Image {
	out := *img
	out.Layers = append([]image.Layer(nil), img.Layers...)
	for i, l := range out.Layers {
		out.Layers[i], _ = layer.RawForm(l)
	}
	return &out
}

// alreadyStored names the image in the store when the store already holds
// it with this very manifest (a rebuild that changed nothing): only names
// change then, and the copy, which would rewrite the same image, is
// skipped.
func alreadyStored(s storage.Store, src *builtRef, dst destination, tags []string) (bool, error) {
	id := src.cfgDigest.Encoded()
	if _, err := s.Image(id); err != nil {
		return false, nil
	}
	if _, err := s.ImageBigDataDigest(id, "manifest-"+src.manDigest.String()); err != nil {
		return false, nil
	}
	names := tags
	if dst.name != nil {
		names = append([]string{dst.name.String()}, tags...)
	}
	if len(names) == 0 {
		return true, nil
	}
	// AddNames takes each name off any other image, as a commit does.
	return true, s.AddNames(id, names)
}
