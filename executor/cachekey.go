package executor

// Step cache keys. A key covers exactly what can change a step's layer:
// its parent key, the expanded step (dockerfile's JSON form, positions and
// display text excluded), and the content it reads — for COPY/ADD from the
// context, the names, types, modes, link targets and contents of exactly
// the files the copy selects (after .dockerignore and --exclude), never
// their mtimes or owners, which COPY does not carry into the layer.

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/builder-dev/builder/cache"
	"github.com/builder-dev/builder/dockerfile"
	"github.com/builder-dev/builder/executor/selection"
	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/platform"
	digest "github.com/opencontainers/go-digest"
)

// rootKey is the key a stage starts from.
func (e *Executor) rootKey(img *image.Image, base string, plat platform.Platform) cache.Key {
	id := img.ManifestDigest
	if id == "" {
		// A stored image without its manifest: its layers and config are its identity.
		b, _ := json.Marshal(img.Config)
		id = cache.DigestOf("image", b)
	}
	if base == "scratch" {
		id = "scratch"
	}
	return e.withSettings(cache.Root(id, plat))
}

// withSettings folds into k the build settings that change every layer's
// bytes, so they are part of every key.
func (e *Executor) withSettings(k cache.Key) cache.Key {
	if e.cfg.Timestamp != nil {
		k = k.Next([]byte("timestamp " + strconv.FormatInt(e.cfg.Timestamp.Unix(), 10)))
	}
	if e.cfg.PortableModes {
		k = k.Next([]byte("portable-modes"))
	}
	return k
}

// contentKey identifies s by what it holds, not by how it was made: its
// base, its layers' diff IDs and platform (plus the settings every layer
// depends on).
// A step keyed on it hits even when an earlier step ran again with other
// inputs but produced the same layer.
func (e *Executor) contentKey(s *stageState) cache.Key {
	if s.key.IsZero() {
		return cache.Key{}
	}
	// Scoped by the base image's key: a moved tag still invalidates
	// everything, even when the new image has the same layers.
	parts := [][]byte{[]byte(s.base.Digest())}
	for _, d := range s.img.Config.RootFS.DiffIDs {
		parts = append(parts, []byte(d))
	}
	return e.withSettings(cache.Root(cache.DigestOf("layers", parts...), s.platform))
}

// keyed is a step key and what the explanation of a miss needs.
type keyed struct {
	key    cache.Key
	def    []byte
	inputs []cache.Input
	files  map[string]digest.Digest // COPY from the context: path → entry digest
}

// stepKey computes the key of step on top of s; the zero key means the
// step is not cacheable (e.g. ADD of a URL without --checksum).
func (e *Executor) stepKey(ctx context.Context, s *stageState, step dockerfile.Step, done map[int]*stageState) (keyed, error) {
	if s.key.IsZero() {
		return keyed{}, nil
	}
	def, err := json.Marshal(step)
	if err != nil {
		return keyed{}, err
	}
	var k keyed
	switch st := step.(type) {
	case *dockerfile.Meta:
		if st.Mkdir == "" {
			return keyed{}, nil
		}
		def, _ = json.Marshal(struct{ Mkdir, User string }{st.Mkdir, s.img.Config.Config.User})
		def = append([]byte("WORKDIR "), def...)
	case *dockerfile.Copy:
		for _, src := range st.Srcs {
			if st.Add && isGitURL(src) {
				// A repository is its commit: a moved branch misses.
				commit, err := e.gitCommit(ctx, src)
				if err != nil {
					return keyed{}, nil // the step itself reports it
				}
				k.inputs = append(k.inputs, cache.Input{Name: "git " + dockerfile.RedactURL(src),
					Digest: cache.DigestOf("git", []byte(commit), []byte(strconv.FormatBool(st.KeepGitDir)))})
				continue
			}
			if st.Add && isURL(src) && st.Checksum == "" {
				return keyed{}, nil // the remote content is unknown until fetched
			}
		}
		in, files, ok, err := e.sourceInput(ctx, st.From, done, st.Platform, func(src *srcRoot) (digest.Digest, map[string]digest.Digest, error) {
			return e.hashSelection(ctx, src, st.Srcs, st.Excludes, st.Parents, st.Add)
		})
		if err != nil || !ok {
			return keyed{}, err
		}
		k.inputs, k.files = append(k.inputs, in), files
	case *dockerfile.Exec:
		// The effective network: --network of the build unless RUN names one.
		network, err := e.runNetwork(st)
		if err != nil {
			return keyed{}, nil // not cacheable: the step itself reports it
		}
		k.inputs = append(k.inputs, cache.Input{Name: "network", Digest: cache.DigestOf("network", []byte(network))})
		// Also in def; named here so a miss can say which variable changed.
		for _, kv := range st.Env {
			name, val, _ := strings.Cut(kv, "=")
			k.inputs = append(k.inputs, cache.Input{Name: "env " + name, Digest: cache.DigestOf("env", []byte(val))})
		}
		for i, m := range st.Mounts {
			if m.Type != "bind" {
				continue // secrets never count; cache and tmpfs mounts hold no input
			}
			in, _, ok, err := e.sourceInput(ctx, m.From, done, st.Platform, func(src *srcRoot) (digest.Digest, map[string]digest.Digest, error) {
				it, err := src.Item(m.Source)
				if err != nil {
					return "", nil, err
				}
				return e.hashItems(ctx, src, []selection.Item{it}, nil)
			})
			if err != nil || !ok {
				return keyed{}, err
			}
			in.Name = fmt.Sprintf("mount %d %s", i, in.Name)
			k.inputs = append(k.inputs, in)
		}
	}
	k.key, k.def = s.key.Next(def, k.inputs...), def
	return k, nil
}

// sourceInput is the input a step reads from src: the content of the
// context files selected (hash), or the key of a stage or base image.
func (e *Executor) sourceInput(ctx context.Context, src dockerfile.Source, done map[int]*stageState, p platform.Platform, hash func(*srcRoot) (digest.Digest, map[string]digest.Digest, error)) (cache.Input, map[string]digest.Digest, bool, error) {
	switch src.Kind {
	case dockerfile.SourceContext:
		d, files, err := hash(e.contextSource())
		if err != nil {
			return cache.Input{}, nil, false, nil // the step itself reports the problem
		}
		return cache.Input{Name: "context", Digest: d}, files, true, nil
	case dockerfile.SourceStage:
		st, ok := done[src.Stage]
		if !ok || st.key.IsZero() {
			return cache.Input{}, nil, false, nil
		}
		return cache.Input{Name: "stage " + strconv.Itoa(src.Stage), Digest: st.key.Digest()}, nil, true, nil
	default:
		if src.Image == "" || src.Image == "scratch" {
			return cache.Input{Name: "scratch", Digest: cache.DigestOf("scratch")}, nil, true, nil
		}
		if named, ok, err := e.namedDir(src.Image); ok || err != nil {
			if err != nil {
				return cache.Input{}, nil, false, nil
			}
			d, files, err := hash(named)
			if err != nil {
				return cache.Input{}, nil, false, nil
			}
			return cache.Input{Name: "context " + src.Image, Digest: d}, files, true, nil
		}
		st, err := e.imageState(ctx, src.Image, p)
		if err != nil {
			return cache.Input{}, nil, false, nil
		}
		return cache.Input{Name: "image " + src.Image, Digest: e.rootKey(&st.img, src.Image, p).Digest()}, nil, true, nil
	}
}

// hashEntry is one selected path, in copy order.
type hashEntry struct {
	name string // item index and path under it, as the layer will place it
	fi   fs.FileInfo
	rel  string // in the source root
	link string
	sum  digest.Digest
}

// hashSelection hashes what a COPY of patterns from src selects: the
// selection walker's items and entries, exactly what the copy writes (or a
// context bind mount shows, for a literal path: see bindItems).
func (e *Executor) hashSelection(ctx context.Context, src *srcRoot, patterns, excludes []string, parents, add bool) (digest.Digest, map[string]digest.Digest, error) {
	// The context does not change during a build: hash each selection once
	// (the up-front probe and the step itself ask for the same ones).
	memo := ""
	if src.context {
		memo = fmt.Sprintf("%q %q %v %v", patterns, excludes, parents, add)
		e.mu.Lock()
		m, ok := e.hashMemo[memo]
		e.mu.Unlock()
		if ok {
			return m.d, m.files, nil
		}
	}
	var paths []string
	for _, p := range patterns {
		if !add || (!isURL(p) && !isGitURL(p)) {
			paths = append(paths, p)
		}
	}
	items, err := src.Items(paths, parents)
	if err != nil {
		return "", nil, err
	}
	d, files, err := e.hashItems(ctx, src, items, excludes)
	if err == nil && memo != "" {
		e.mu.Lock()
		if e.hashMemo == nil {
			e.hashMemo = map[string]hashResult{}
		}
		e.hashMemo[memo] = hashResult{d, files}
		e.mu.Unlock()
	}
	return d, files, err
}

type hashResult struct {
	d     digest.Digest
	files map[string]digest.Digest
}

// hashItems hashes items and what the walker selects below them.
func (e *Executor) hashItems(ctx context.Context, src *srcRoot, items []selection.Item, excludes []string) (digest.Digest, map[string]digest.Digest, error) {
	x, err := selection.NewExcludes(excludes)
	if err != nil {
		return "", nil, err
	}
	var ents []hashEntry
	for i := range items {
		it := &items[i]
		prefix := it.Rel + "\x00" + it.Keep
		err := src.Walk(ctx, it, x, selection.Visitor{Visit: func(en *selection.Entry) error {
			name := prefix
			if en.Parent != nil {
				name = prefix + "\x00" + en.Rel
			}
			ents = append(ents, hashEntry{name: name, fi: en.Info, rel: en.Rel})
			return nil
		}})
		if err != nil {
			return "", nil, err
		}
	}
	if err := e.sumFiles(ctx, src, ents); err != nil {
		return "", nil, err
	}
	h := sha256.New()
	files := make(map[string]digest.Digest, len(ents))
	var ef entryFramer
	for i := range ents {
		d := ef.digest(&ents[i], e.cfg.PortableModes && src.context, src.keepOwner)
		h.Write([]byte(d))
		files[ents[i].rel] = d
	}
	return digest.NewDigest(digest.SHA256, h), files, nil
}

// sumFiles fills in link targets and content digests, reading files in
// parallel and reusing digests from the file-hash index for the context.
func (e *Executor) sumFiles(ctx context.Context, src *srcRoot, ents []hashEntry) error {
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	for range max(4, runtime.GOMAXPROCS(0)*2) {
		wg.Go(func() {
			for i := range work {
				en := &ents[i]
				switch {
				case en.fi.Mode()&fs.ModeSymlink != 0:
					l, err := src.FS.Readlink(en.rel)
					if err != nil {
						fail(err)
						continue
					}
					en.link = l
				case en.fi.Mode().IsRegular():
					st, ok := en.fi.Sys().(*syscall.Stat_t)
					if !ok {
						fail(fmt.Errorf("%s: no stat", en.rel))
						continue
					}
					open := func() (*os.File, error) { return src.FS.Open(en.rel) }
					var d digest.Digest
					var err error
					if e.cfg.FileHashes != nil && src.context {
						d, err = e.cfg.FileHashes.Sum(e.cfg.Context+"\x00"+en.rel, st, open)
					} else {
						d, err = sumOpen(open)
					}
					if err != nil {
						fail(err)
						continue
					}
					en.sum = d
				}
			}
		})
	}
	for i := range ents {
		if ctx.Err() != nil {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

func sumOpen(open func() (*os.File, error)) (digest.Digest, error) {
	f, err := open()
	if err != nil {
		return "", err
	}
	defer f.Close()
	return digest.SHA256.FromReader(f)
}

// entryFramer frames entries (see digest), reusing its hash and buffer:
// a COPY of 20,000 files frames 20,000 of them on every build.
type entryFramer struct {
	h   hash.Hash
	buf []byte
}

// digest frames one entry: its place, type, the mode COPY writes, the
// owner when the copy keeps it, link target and content, each field as
// "len:value".
func (f *entryFramer) digest(en *hashEntry, portable, keepOwner bool) digest.Digest {
	if f.h == nil {
		f.h = sha256.New()
	}
	f.h.Reset()
	field := func(s string) {
		f.buf = strconv.AppendInt(f.buf[:0], int64(len(s)), 10)
		f.buf = append(f.buf, ':')
		f.buf = append(f.buf, s...)
		f.h.Write(f.buf)
	}
	field(en.name)
	field(en.fi.Mode().Type().String())
	mode := en.fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	if portable {
		mode = portableMode(en.fi.Mode())
	}
	field(strconv.FormatUint(uint64(mode), 8))
	if keepOwner {
		if st, ok := en.fi.Sys().(*syscall.Stat_t); ok {
			field(strconv.FormatUint(uint64(st.Uid), 10) + ":" + strconv.FormatUint(uint64(st.Gid), 10))
		}
	}
	field(en.link)
	if en.fi.Mode().IsRegular() {
		field(strconv.FormatInt(en.fi.Size(), 10))
	}
	field(string(en.sum))
	return digest.NewDigest(digest.SHA256, f.h)
}

// portableMode is the mode --portable-modes gives a context file, as git
// records it: 0755 for directories and executables, 0644 otherwise.
func portableMode(m fs.FileMode) fs.FileMode {
	if m.IsDir() || m&0o111 != 0 {
		return 0o755
	}
	return 0o644
}

// HashContext hashes dir as `COPY . /` would select it (after ignore),
// reading every file: what hashing a context costs without the file-hash
// index (`builder cache hash-context`, the bench's floor for rebuilds).
func HashContext(ctx context.Context, dir string, ignore *dockerfile.Ignore) (digest.Digest, int, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", 0, err
	}
	defer root.Close()
	e := &Executor{cfg: Config{Context: dir}}
	src := &srcRoot{Root: selection.Root{FS: root, Ignore: ignore, What: "build context"}, context: true}
	d, files, err := e.hashSelection(ctx, src, []string{"."}, nil, false, false)
	return d, len(files), err
}
