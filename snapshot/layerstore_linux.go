package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// layerStore keeps each layer extracted once under <root>/layers/<diffid-hex>, in overlay format:
// a whiteout is a 0/0 character device, an opaque directory carries <prefix>opaque=y. Where the
// kernel refuses either (mknod before Linux 5.8 unprivileged, no xattr support), the OCI marker file
// stays instead, which fuse-overlayfs reads as well.
//
// A layer is extracted into <root>/layers/.tmp-<hex>-<rand> (flocked while in use) and renamed into
// place, so a torn extraction is never used; a per-layer flock under <root>/locks lets concurrent
// builders share one extraction, and a lost rename race simply adopts the winner's copy.
type layerStore struct {
	dir     string // <root>/layers
	locks   string // <root>/locks
	prefix  string // "trusted.overlay." or "user.overlay."
	extract ApplyOptions
}

// formatFile records the xattr namespace of the store's opaque markers: a store written as real
// root cannot serve a user namespace (trusted.* is invisible there), nor the other way round.
const formatFile = ".overlay-xattr-prefix"

func openLayerStore(root, prefix string, extract ApplyOptions, log *slog.Logger) (*layerStore, error) {
	s := &layerStore{dir: filepath.Join(root, "layers"), locks: filepath.Join(root, "locks"), prefix: prefix, extract: extract}
	for _, d := range []string{s.dir, s.locks} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("layer store: %w", err)
		}
	}
	if err := s.checkFormat(); err != nil {
		return nil, err
	}
	s.dropTorn(log)
	sweepStale(s.dir, ".tmp-", nil, log)
	return s, nil
}

// Durability without syncfs. A published layer tree is not flushed to disk: a syncfs per layer
// flushes every dirty page of the filesystem (the layer blob, the store's own writes, other
// builds) and cost more than the rest of a large COPY. Instead publish first creates an empty
// marker <root>/layers/.unsynced/<hex>.<boot-id>. Journaling filesystems order name operations,
// so a rename that survived a crash implies its marker did. Within one boot the page cache is
// authoritative and the tree is whole; a marker from another boot means the machine went down
// before writeback may have finished, so that tree is dropped (re-extracted from its blob when
// next needed). Markers of this boot are cleared after one syncfs, once they are old enough that
// writeback has normally done its work, so the flush is nearly free.
const unsyncedDir = ".unsynced"

// markerAge is how old this boot's markers must be before a store open syncs and clears them
// (the kernel writes dirty pages back after 30 s by default).
const markerAge = 2 * time.Minute

func (s *layerStore) dropTorn(log *slog.Logger) {
	dir := filepath.Join(s.dir, unsyncedDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	boot := bootID()
	var old []string
	synced := false
	for _, e := range ents {
		hex, id, ok := strings.Cut(e.Name(), ".")
		if _, err := layerHex(digest.NewDigestFromEncoded(digest.SHA256, hex)); !ok || err != nil {
			continue
		}
		marker := filepath.Join(dir, e.Name())
		if id == boot && boot != "" {
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > markerAge {
				old = append(old, marker)
			}
			continue
		}
		// Another boot: the tree may be torn. Move it aside atomically (a reader never sees it
		// half-deleted), then remove it as a stale temp dir.
		final := filepath.Join(s.dir, hex)
		trash := filepath.Join(s.dir, ".tmp-torn-"+hex+"-"+randomID())
		if err := os.Rename(final, trash); err == nil {
			log.Debug("dropped a layer tree not flushed before a restart", "layer", hex)
			removeTree(trash)
		} else if !errors.Is(err, os.ErrNotExist) {
			continue // keep the marker: try again next time
		}
		os.Remove(marker)
	}
	for _, m := range old {
		if !synced {
			if syncDir(s.dir) != nil {
				return
			}
			synced = true
		}
		os.Remove(m)
	}
}

// bootID names this boot of the kernel ("" when unknown, and then every marker counts as another
// boot's: safe, at the cost of re-extraction).
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.ReplaceAll(strings.TrimSpace(string(b)), "-", "")
}

// markUnsynced records, before final is renamed into place, that its tree is not yet on disk.
func (s *layerStore) markUnsynced(final string) error {
	dir := filepath.Join(s.dir, unsyncedDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, filepath.Base(final)+"."+bootID()), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

func (s *layerStore) checkFormat() error {
	p := filepath.Join(s.dir, formatFile)
	tmp := p + "." + randomID()
	if err := os.WriteFile(tmp, []byte(s.prefix), 0o600); err != nil {
		return fmt.Errorf("layer store: %w", err)
	}
	err := os.Link(tmp, p) // atomic create-if-absent, even across processes
	os.Remove(tmp)
	if err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("layer store: %w", err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("layer store: %w", err)
	}
	if string(got) != s.prefix {
		return fmt.Errorf("layer store %s keeps overlay markers in %q xattrs but this process needs %q (real root and user namespaces cannot share a snapshot root)", s.dir, got, s.prefix)
	}
	return nil
}

func (s *layerStore) path(d digest.Digest) (string, error) {
	h, err := layerHex(d)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.dir, h), nil
}

func dirExists(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

// get returns the directory of layer l, extracting it first if no one has.
func (s *layerStore) get(ctx context.Context, l Layer) (string, error) {
	final, err := s.path(l.DiffID)
	if err != nil || layerDir(final, false) {
		return final, err
	}
	unlock, err := flockPath(ctx, filepath.Join(s.locks, filepath.Base(final)))
	if err != nil {
		return "", err
	}
	defer unlock()
	if layerDir(final, true) {
		return final, nil // extracted while we waited
	}
	if l.Open == nil {
		return "", fmt.Errorf("layer %s is not extracted and has no content to extract", l.DiffID)
	}
	tmp, err := newLockedDir(s.dir, ".tmp-"+filepath.Base(final)+"-")
	if err != nil {
		return "", fmt.Errorf("layer store: %w", err)
	}
	defer tmp.unlock()
	if err := s.extractInto(ctx, tmp.path, l); err != nil {
		removeTree(tmp.path)
		return "", fmt.Errorf("extract layer %s: %w", l.DiffID, err)
	}
	if err := s.publish(tmp.path, final); err != nil {
		removeTree(tmp.path)
		return "", fmt.Errorf("layer store: %w", err)
	}
	return final, nil
}

func (s *layerStore) extractInto(ctx context.Context, dir string, l Layer) error {
	rc, err := l.Open(ctx)
	if err != nil {
		return err
	}
	defer rc.Close()
	v := verifyDiffID(rc, l.DiffID)
	if _, err := extractOverlay(ctx, dir, v, s.extract, s.prefix); err != nil {
		return err
	}
	return v.finish()
}

// publish makes a complete tree (extracted, or a committed upper dir) the layer at final.
func (s *layerStore) publish(tmp, final string) error {
	if err := os.Chmod(tmp, 0o755); err != nil { // lockedDir made it 0700; overlay lowers need search access
		return err
	}
	if err := s.markUnsynced(final); err != nil {
		return err
	}
	return publishDir(tmp, final)
}

// adopt makes dir (an upper dir already in store format) the layer diffID.
func (s *layerStore) adopt(dir string, diffID digest.Digest) error {
	final, err := s.path(diffID)
	if err != nil {
		return err
	}
	if !layerDir(final, false) {
		// A link to a tree the image store deleted: this tree replaces it.
		unlock, err := flockPath(context.Background(), filepath.Join(s.locks, filepath.Base(final)))
		if err != nil {
			return err
		}
		layerDir(final, true)
		defer unlock()
	}
	if err := s.publish(dir, final); err != nil {
		return fmt.Errorf("commit layer %s: %w", diffID, err)
	}
	return nil
}

// extractOverlay extracts a layer tar alone into the empty directory dir, in overlay format.
//
// It reuses Apply for all the safety (paths stay inside dir, names are checked) with NoWhiteouts,
// so ".wh." entries land as plain files, which Apply lists as it goes; then each becomes what
// overlayfs expects. Whiteouts only hide lower layers, so in an empty dir there is nothing to remove.
func extractOverlay(ctx context.Context, dir string, r io.Reader, opts ApplyOptions, prefix string) (int64, error) {
	var entries []whiteoutEntry
	opts.NoWhiteouts = true
	opts.KeptWhiteout = func(d, base string) { entries = append(entries, whiteoutEntry{d, base}) }
	n, err := Apply(ctx, dir, r, opts)
	if err != nil {
		return n, err
	}
	return n, convertWhiteouts(dir, entries, prefix)
}

type whiteoutEntry struct{ dir, base string }

// convertWhiteouts turns the ".wh." files Apply left into overlay whiteouts and opaque markers.
func convertWhiteouts(dir string, entries []whiteoutEntry, prefix string) error {
	if len(entries) == 0 {
		return nil
	}
	ir, err := openInRoot(dir)
	if err != nil {
		return err
	}
	defer ir.Close()
	for _, w := range entries {
		ir.sweep()
		pfd, err := ir.dir(w.dir, false)
		if err != nil {
			return fmt.Errorf("whiteout %s: %w", joinName(w.dir, w.base), err)
		}
		if err := convertWhiteout(pfd, w.base, prefix); err != nil {
			return fmt.Errorf("whiteout %s: %w", joinName(w.dir, w.base), err)
		}
	}
	return nil
}

// convertWhiteout converts one marker in the directory pfd, whose times it then restores: Apply
// set them from the archive, and a layer dir's times show through the overlay.
func convertWhiteout(pfd int, base, prefix string) error {
	if _, err := lstatAt(pfd, base); errors.Is(err, unix.ENOENT) {
		return nil // listed twice
	}
	fd, err := openAt(pfd, ".", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if err := convertMarker(fd, base, prefix); err != nil {
		return err
	}
	return futimens(fd, &[2]unix.Timespec{st.Atim, st.Mtim})
}

func convertMarker(pfd int, base, prefix string) error {
	switch {
	case base == whiteoutOpaque:
		err := unix.Fsetxattr(pfd, prefix+"opaque", []byte("y"), 0)
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOTSUP) {
			return nil // keep the marker file: fuse-overlayfs honours it
		}
		if err != nil {
			return fmt.Errorf("set opaque xattr: %w", err)
		}
	case strings.HasPrefix(base, whiteoutMetaPrefix):
		// other AUFS metadata (.wh..wh.plnk...): meaningless to overlay, dropped as Apply does
	default:
		victim := base[len(whiteoutPrefix):]
		if victim == "" || victim == "." || victim == ".." {
			return fmt.Errorf("%w: whiteout of %q", errUnsafeName, victim)
		}
		if _, err := lstatAt(pfd, victim); err == nil {
			break // this layer also has the entry: it already hides whatever is below
		}
		err := retry(func() error { return unix.Mknodat(pfd, victim, unix.S_IFCHR, 0) })
		if errors.Is(err, unix.EPERM) {
			return nil // keep the ".wh." file: fuse-overlayfs honours it
		}
		if err != nil {
			return fmt.Errorf("create whiteout: %w", err)
		}
	}
	return removeAllAt(pfd, base)
}

// ErrDiffIDMismatch is wrapped when a layer's tar is not the one its diff ID names.
var ErrDiffIDMismatch = errors.New("layer content does not match its diff ID")

// diffVerifier hashes a layer's tar as it is extracted. A tree is trusted by
// its diff ID (other builds in the same store reuse it by that name), and
// the ID may come from a base image's config or a remote cache record, so
// a tree is published only once its bytes were seen to hash to it.
type diffVerifier struct {
	r    io.Reader
	want digest.Digest
	v    digest.Verifier // nil when r digests what it gives already
}

// hashingReader is a layer stream that digests the bytes read through it
// itself (the executor's layer.SplitReader does, for the tar-split it
// keeps): the verifier takes that digest instead of hashing them twice.
type hashingReader interface {
	io.Reader
	Digest() digest.Digest
}

func verifyDiffID(r io.Reader, want digest.Digest) *diffVerifier {
	if _, ok := r.(hashingReader); ok {
		return &diffVerifier{r: r, want: want}
	}
	return &diffVerifier{r: r, want: want, v: want.Verifier()}
}

func (d *diffVerifier) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if d.v != nil {
		d.v.Write(p[:n]) // a digest.Verifier never fails to write
	}
	return n, err
}

// finish reads what the extraction left (padding after the end-of-archive
// blocks) and checks the digest.
func (d *diffVerifier) finish() error {
	if _, err := io.Copy(io.Discard, d); err != nil {
		return err
	}
	ok := false
	if d.v != nil {
		ok = d.v.Verified()
	} else {
		ok = d.r.(hashingReader).Digest() == d.want
	}
	if !ok {
		return fmt.Errorf("%w %s", ErrDiffIDMismatch, d.want)
	}
	return nil
}
