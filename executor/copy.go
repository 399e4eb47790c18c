package executor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/builder-dev/builder/dockerfile"
	"github.com/builder-dev/builder/platform"
	securejoin "github.com/cyphar/filepath-securejoin"
)

// copyJob is one COPY/ADD being written into an upper dir.
type copyJob struct {
	e      *Executor
	step   *dockerfile.Copy
	up     *os.Root // the new layer's upper dir
	rootfs *os.Root // the stage's current rootfs (nil with --link)
	owner  *idPair  // --chown, resolved; nil keeps the source's (stage/image) or 0:0 (context)
	mode   *fs.FileMode
	links  map[[2]uint64]string // source (dev, ino) → upper path, to keep hard links
	dirs   []dirTimes           // directory mtimes, applied after their contents
	buf    []byte               // copy buffer, reused for every file of the job
	// portable: --portable-modes for a copy from the context (git's modes).
	portable bool
	// fromContext: the sources are build context files, whose mtimes
	// are not kept (see copyTime).
	fromContext bool
}

// mtimeOf is the mtime a copied entry gets: its own for stage and image
// sources (part of their content), copyTime for context files.
func (j *copyJob) mtimeOf(fi fs.FileInfo) time.Time {
	if j.fromContext {
		return j.e.copyTime()
	}
	return fi.ModTime()
}

type dirTimes struct {
	rel string
	t   time.Time
}

// srcRoot is where COPY reads from.
type srcRoot struct {
	root      *os.Root
	ignore    *dockerfile.Ignore // context only
	keepOwner bool               // stage/image sources keep their ownership
	context   bool               // the build context
	what      string             // for errors: "build context" or "stage X"
}

func (e *Executor) runCopy(ctx context.Context, s *stageState, c *dockerfile.Copy, done map[int]*stageState) error {
	m, err := e.prepare(ctx, s)
	if err != nil {
		return err
	}
	defer m.Release()
	rootfs, err := os.OpenRoot(m.Root())
	if err != nil {
		return err
	}
	defer rootfs.Close()

	// Files are written into the snapshot itself; the driver's diff finds
	// them (and the parents they touched) for the layer.
	job := &copyJob{e: e, step: c, up: rootfs, rootfs: rootfs, links: map[[2]uint64]string{}}
	if c.Link {
		job.rootfs = nil
	}
	if c.Chown != "" {
		ids, err := resolveChown(rootfs, c.Chown)
		if err != nil {
			return fmt.Errorf("--chown: %w", err)
		}
		job.owner = &ids
	}
	if c.Chmod != "" {
		n, err := strconv.ParseUint(c.Chmod, 8, 32)
		if err != nil || n > 0o7777 {
			return fmt.Errorf("--chmod: invalid mode %q", c.Chmod)
		}
		m := unixMode(uint32(n))
		job.mode = &m
	}
	src, cleanup, err := e.copySource(ctx, c, done)
	if err != nil {
		return err
	}
	defer cleanup()
	job.portable = e.cfg.PortableModes && src.context
	job.fromContext = src.context
	if err := job.run(ctx, src); err != nil {
		return err
	}
	rootfs.Close()
	return e.commitMount(ctx, s, m, c.String())
}

// copySource opens the root a COPY reads from.
func (e *Executor) copySource(ctx context.Context, c *dockerfile.Copy, done map[int]*stageState) (*srcRoot, func(), error) {
	switch c.From.Kind {
	case dockerfile.SourceContext:
		return &srcRoot{root: e.ctxRoot, ignore: e.cfg.Ignore, context: true, what: "build context"}, func() {}, nil
	case dockerfile.SourceStage:
		st, ok := done[c.From.Stage]
		if !ok {
			return nil, nil, fmt.Errorf("--from: stage %d has not been built", c.From.Stage)
		}
		return e.openStateRoot(ctx, st, fmt.Sprintf("stage %d", c.From.Stage))
	default:
		st, err := e.imageState(ctx, c.From.Image, c.Platform)
		if err != nil {
			return nil, nil, fmt.Errorf("--from=%s: %w", c.From.Image, err)
		}
		return e.openStateRoot(ctx, st, "image "+c.From.Image)
	}
}

// imageState is an image used as a COPY or mount source.
func (e *Executor) imageState(ctx context.Context, ref string, p platform.Platform) (*stageState, error) {
	img, err := e.resolve(ctx, ref, p)
	if err != nil {
		return nil, err
	}
	return &stageState{img: *img, platform: p}, nil
}

// openStateRoot gives read access to a stage's or image's file tree.
func (e *Executor) openStateRoot(ctx context.Context, st *stageState, what string) (*srcRoot, func(), error) {
	dir, release, err := e.cfg.Snapshots.View(ctx, snapLayers(st.img.Layers))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		release()
		return nil, nil, err
	}
	return &srcRoot{root: r, keepOwner: true, what: what}, func() { r.Close(); release() }, nil
}

// item is one matched source.
type item struct {
	rel  string // cleaned, relative to the source root ("." for the root)
	keep string // for --parents: the relative path kept under Dest
}

func (j *copyJob) run(ctx context.Context, src *srcRoot) error {
	c := j.step
	var items []item
	var urls []string
	for _, p := range c.Srcs {
		if c.Add && isURL(p) {
			urls = append(urls, p)
			continue
		}
		if c.Add && isGitURL(p) {
			return fmt.Errorf("ADD %s: git sources are not supported", p)
		}
		matched, err := expandSource(src, p, c.Parents)
		if err != nil {
			return err
		}
		items = append(items, matched...)
	}
	n := len(items) + len(urls) + len(c.Inline)
	if n == 0 {
		return errors.New("no source files were specified")
	}
	destIsDir := strings.HasSuffix(c.Dest, "/") || c.Parents
	dest, err := j.resolveDest(c.Dest)
	if err != nil {
		return err
	}
	if !destIsDir && j.existsDir(dest) {
		destIsDir = true
	}
	if n > 1 && !destIsDir {
		return fmt.Errorf("when using %s with more than one source file, the destination must be a directory and end with a /", firstWord(c.String()))
	}
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := j.copyItem(ctx, src, it, dest, destIsDir); err != nil {
			return err
		}
	}
	for _, u := range urls {
		if err := j.fetchURL(ctx, u, dest, destIsDir); err != nil {
			return err
		}
	}
	for _, h := range c.Inline {
		target := dest
		if destIsDir {
			target = path.Join(dest, h.Name)
		}
		if err := j.writeFile(target, strings.NewReader(h.Data), 0o644, idPair{}, time.Time{}); err != nil {
			return err
		}
	}
	return j.finishDirs()
}

// resolveDest resolves the destination through the rootfs' symlinks (so a
// COPY into /usr/local/bin where bin is a link lands where docker puts it)
// and returns a cleaned relative path. A trailing "/" is not kept.
func (j *copyJob) resolveDest(dest string) (string, error) {
	clean := path.Clean("/" + dest)
	if j.rootfs == nil || clean == "/" {
		return strings.TrimPrefix(clean, "/"), nil
	}
	dir, base := path.Split(clean)
	// Resolve the parent fully; the last element is resolved only if it is
	// an existing symlink to a directory, as docker does.
	real, err := securejoin.SecureJoin(j.rootfs.Name(), dir)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", dest, err)
	}
	relDir := strings.TrimPrefix(strings.TrimPrefix(real, j.rootfs.Name()), "/")
	rel := path.Join(relDir, base)
	if fi, err := j.rootfs.Lstat(rel); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		if st, err := j.rootfs.Stat(rel); err == nil && st.IsDir() {
			real, err := securejoin.SecureJoin(j.rootfs.Name(), rel)
			if err == nil {
				rel = strings.TrimPrefix(strings.TrimPrefix(real, j.rootfs.Name()), "/")
			}
		}
	}
	return rel, nil
}

func (j *copyJob) existsDir(rel string) bool {
	if rel == "" || rel == "." {
		return true
	}
	if fi, err := j.up.Stat(rel); err == nil {
		return fi.IsDir()
	}
	if j.rootfs != nil {
		if fi, err := j.rootfs.Stat(rel); err == nil {
			return fi.IsDir()
		}
	}
	return false
}

// expandSource matches one source pattern against the source root.
func expandSource(src *srcRoot, p string, parents bool) ([]item, error) {
	keepFrom := ""
	if parents {
		// "a/./b/c" keeps "b/c" under the destination; otherwise the whole path.
		if i := strings.Index(p, "/./"); i >= 0 {
			keepFrom = path.Clean(p[:i])
		}
	}
	clean := strings.TrimPrefix(path.Clean("/"+p), "/")
	if clean == "" {
		clean = "."
	}
	var rels []string
	if !hasMeta(clean) {
		if _, err := src.lstat(clean); err != nil {
			return nil, err
		}
		rels = []string{clean}
	} else {
		var err error
		rels, err = src.glob(clean)
		if err != nil {
			return nil, err
		}
		if len(rels) == 0 {
			return nil, fmt.Errorf("%s: no source files match %q", src.what, p)
		}
	}
	out := make([]item, 0, len(rels))
	for _, r := range rels {
		it := item{rel: r}
		if parents {
			it.keep = r
			if keepFrom != "" && keepFrom != "." {
				it.keep = strings.TrimPrefix(strings.TrimPrefix(r, keepFrom), "/")
			}
		}
		out = append(out, it)
	}
	return out, nil
}

func hasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// lstat stats a source path, treating .dockerignore'd paths as absent.
func (s *srcRoot) lstat(rel string) (fs.FileInfo, error) {
	if s.excluded(rel) {
		return nil, fmt.Errorf("%s: file not found (excluded by .dockerignore): %s", s.what, rel)
	}
	fi, err := s.root.Lstat(rel)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: file not found: %s", s.what, rel)
		}
		return nil, err
	}
	return fi, nil
}

func (s *srcRoot) excluded(rel string) bool {
	if s.ignore == nil || rel == "." {
		return false
	}
	ok, err := s.ignore.Matches(rel)
	return err == nil && ok
}

// glob expands a pattern one path element at a time, in sorted order.
func (s *srcRoot) glob(pattern string) ([]string, error) {
	cands := []string{"."}
	for _, el := range strings.Split(pattern, "/") {
		var next []string
		for _, c := range cands {
			if !hasMeta(el) {
				p := path.Join(c, el)
				if _, err := s.root.Lstat(p); err == nil && !s.excluded(p) {
					next = append(next, p)
				}
				continue
			}
			if _, err := path.Match(el, ""); err != nil {
				return nil, fmt.Errorf("bad pattern %q: %w", pattern, err)
			}
			f, err := s.root.Open(c)
			if err != nil {
				continue
			}
			names, err := f.Readdirnames(-1)
			f.Close()
			if err != nil {
				continue
			}
			sort.Strings(names)
			for _, n := range names {
				if ok, _ := path.Match(el, n); ok {
					p := path.Join(c, n)
					if !s.excluded(p) {
						next = append(next, p)
					}
				}
			}
		}
		cands = next
	}
	return cands, nil
}

// copyItem copies one matched source to its place under dest.
func (j *copyJob) copyItem(ctx context.Context, src *srcRoot, it item, dest string, destIsDir bool) error {
	// The source path itself is followed if it is a symlink (docker copies
	// the target); links inside copied directories are kept as links.
	fi, err := src.root.Stat(it.rel)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", src.what, it.rel, err)
	}
	target := dest
	if it.keep != "" {
		target = path.Join(dest, it.keep)
		if fi.IsDir() {
			target = path.Join(dest, it.keep)
		}
	} else if !fi.IsDir() && destIsDir {
		target = path.Join(dest, path.Base(it.rel))
	}
	if fi.IsDir() {
		if err := j.mkdirAll(target, fi, src); err != nil {
			return err
		}
		return j.copyDir(ctx, src, it.rel, target)
	}
	if j.step.Add && (j.step.Unpack == nil || *j.step.Unpack) {
		if ok, err := j.maybeExtract(ctx, src, it.rel, dest); ok || err != nil {
			return err
		}
	}
	if err := j.mkdirParents(target); err != nil {
		return err
	}
	return j.copyEntry(src.root, it.rel, it.rel, j.up, target, target, src, fi)
}

// copyDir copies the contents of directory rel to the existing directory
// target. Both are opened once, and every entry is reached from them by its
// name alone: one *at call per operation instead of a walk from the root
// for each (20,000 files made ~22 openat each otherwise).
func (j *copyJob) copyDir(ctx context.Context, src *srcRoot, rel, target string) error {
	sd, err := src.root.OpenRoot(rel)
	if err != nil {
		return err
	}
	defer sd.Close()
	dd, err := j.up.OpenRoot(cmp.Or(target, "."))
	if err != nil {
		return err
	}
	defer dd.Close()
	f, err := sd.Open(".")
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("read %s: %w", rel, err)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		srel := path.Join(rel, n)
		if src.excluded(srel) || j.excluded(srel, rel) {
			// An excluded directory may still hold re-included ("!") paths.
			if src.ignore != nil && src.ignore.HasExclusions() {
				if fi, err := src.root.Lstat(srel); err == nil && fi.IsDir() {
					if err := j.copyDirFiltered(ctx, src, srel, path.Join(target, n)); err != nil {
						return err
					}
				}
			}
			continue
		}
		fi, err := sd.Lstat(n)
		if err != nil {
			return err
		}
		t := path.Join(target, n)
		if !fi.IsDir() {
			err = j.copyEntry(sd, n, srel, dd, n, t, src, fi)
		} else if err = j.mkdirOne(dd, n, t, fi, src); err == nil {
			err = j.copyDir(ctx, src, srel, t)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// copyChild copies one directory entry: a directory recursively, anything
// else as itself.
func (j *copyJob) copyChild(ctx context.Context, src *srcRoot, srel, t string, fi fs.FileInfo) error {
	if !fi.IsDir() {
		return j.copyEntry(src.root, srel, srel, j.up, t, t, src, fi)
	}
	if err := j.mkdirOne(j.up, t, t, fi, src); err != nil {
		return err
	}
	return j.copyDir(ctx, src, srel, t)
}

// copyDirFiltered walks an excluded directory for re-included paths and
// copies only those, creating their parents.
func (j *copyJob) copyDirFiltered(ctx context.Context, src *srcRoot, rel, target string) error {
	f, err := src.root.Open(rel)
	if err != nil {
		return nil
	}
	names, _ := f.Readdirnames(-1)
	f.Close()
	sort.Strings(names)
	for _, n := range names {
		srel := path.Join(rel, n)
		t := path.Join(target, n)
		fi, err := src.root.Lstat(srel)
		if err != nil {
			continue
		}
		if src.excluded(srel) {
			if fi.IsDir() {
				if err := j.copyDirFiltered(ctx, src, srel, t); err != nil {
					return err
				}
			}
			continue
		}
		if err := j.mkdirParents(t); err != nil {
			return err
		}
		if err := j.copyChild(ctx, src, srel, t, fi); err != nil {
			return err
		}
	}
	return nil
}

// excluded applies COPY --exclude patterns, matched against the path
// relative to the copied directory and against the base name.
func (j *copyJob) excluded(srel, base string) bool {
	return matchExcludes(j.step.Excludes, srel, base)
}

func matchExcludes(excludes []string, srel, base string) bool {
	if len(excludes) == 0 {
		return false
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(srel, base), "/")
	for _, p := range excludes {
		p = strings.TrimPrefix(path.Clean("/"+p), "/")
		for _, cand := range []string{rel, srel, path.Base(srel)} {
			if ok, _ := path.Match(p, cand); ok {
				return true
			}
		}
		// A pattern naming a directory excludes what is below it.
		if strings.HasPrefix(rel, p+"/") || strings.HasPrefix(srel, p+"/") {
			return true
		}
	}
	return false
}

// copyEntry copies a non-directory entry: sname in sd (srel in the source,
// for messages) to name in dd (target in the upper dir). The directories
// may be the roots themselves, with full relative paths as names.
func (j *copyJob) copyEntry(sd *os.Root, sname, srel string, dd *os.Root, name, target string, src *srcRoot, fi fs.FileInfo) error {
	owner := j.ownerFor(src, fi)
	switch {
	case fi.Mode().IsRegular():
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			key := [2]uint64{uint64(st.Dev), st.Ino}
			if first, ok := j.links[key]; ok {
				dd.RemoveAll(name)
				return j.up.Link(first, target)
			}
			j.links[key] = target
		}
		f, err := sd.Open(sname)
		if err != nil {
			return err
		}
		defer f.Close()
		return j.writeFileAt(dd, name, target, f, fi.Mode(), owner, j.mtimeOf(fi))
	case fi.Mode()&fs.ModeSymlink != 0:
		link, err := sd.Readlink(sname)
		if err != nil {
			return err
		}
		dd.RemoveAll(name)
		if err := dd.Symlink(link, name); err != nil {
			return err
		}
		j.chown(dd, name, target, owner, true)
		return nil
	case fi.Mode()&(fs.ModeSocket) != 0:
		return nil // sockets never enter a layer
	default:
		return fmt.Errorf("%s: %s: unsupported file type %s", src.what, srel, fi.Mode().Type())
	}
}

func (j *copyJob) ownerFor(src *srcRoot, fi fs.FileInfo) idPair {
	if j.owner != nil {
		return *j.owner
	}
	if src != nil && src.keepOwner {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			return idPair{int(st.Uid), int(st.Gid)}
		}
	}
	return idPair{}
}

func (j *copyJob) permFor(m fs.FileMode) fs.FileMode {
	if j.mode != nil {
		return *j.mode
	}
	if j.portable {
		return portableMode(m)
	}
	return m & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

// writeFile creates target in the upper dir with r's content.
func (j *copyJob) writeFile(target string, r io.Reader, mode fs.FileMode, owner idPair, mtime time.Time) error {
	if err := j.mkdirParents(target); err != nil {
		return err
	}
	return j.writeFileAt(j.up, target, target, r, mode, owner, mtime)
}

// writeFileAt creates name in dd (target in the upper dir) with r's content.
func (j *copyJob) writeFileAt(dd *os.Root, name, target string, r io.Reader, mode fs.FileMode, owner idPair, mtime time.Time) error {
	if fi, err := dd.Lstat(name); err == nil && (fi.IsDir() || fi.Mode()&fs.ModeSymlink != 0) {
		if err := dd.RemoveAll(name); err != nil {
			return err
		}
	}
	f, err := dd.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create /%s: %w", target, err)
	}
	if err := j.copyData(f, r); err != nil {
		f.Close()
		return fmt.Errorf("write /%s: %w", target, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	j.chown(dd, name, target, owner, false)
	if err := dd.Chmod(name, j.permFor(mode)); err != nil {
		return err
	}
	if mtime.IsZero() {
		mtime = j.e.copyTime()
	}
	return dd.Chtimes(name, mtime, mtime)
}

// copyData writes r into f. Small files go through the job's one buffer:
// os.File's ReadFrom would first try copy_file_range (refused between the
// context's file system and an overlay) and then allocate 32 KiB per file.
// Large ones take ReadFrom, which copies in the kernel where it can.
func (j *copyJob) copyData(f *os.File, r io.Reader) error {
	if j.buf == nil {
		j.buf = make([]byte, 256<<10) // one buffer per COPY, not per file
	}
	if src, ok := r.(*os.File); ok {
		if fi, err := src.Stat(); err == nil && fi.Size() > int64(len(j.buf)) {
			_, err := f.ReadFrom(src)
			return err
		}
	}
	_, err := io.CopyBuffer(struct{ io.Writer }{f}, struct{ io.Reader }{r}, j.buf)
	return err
}

// chown sets the owner of name in dd (target in the upper dir, for
// messages); without an id range it warns once instead.
func (j *copyJob) chown(dd *os.Root, name, target string, o idPair, link bool) {
	if !j.e.chownOK {
		if (o.UID != 0 || o.GID != 0) && !j.e.warnedIDs {
			j.e.warnedIDs = true
			j.e.cfg.Log.Warn("ownership other than root cannot be stored without a subordinate id range; files will be owned by root", "owner", fmt.Sprintf("%d:%d", o.UID, o.GID))
		}
		return
	}
	var err error
	if link {
		err = dd.Lchown(name, o.UID, o.GID)
	} else {
		err = dd.Chown(name, o.UID, o.GID)
	}
	if err != nil && !j.e.warnedIDs {
		j.e.warnedIDs = true
		j.e.cfg.Log.Warn("cannot set ownership", "path", "/"+target, "err", err)
	}
}

// mkdirAll creates target as the copy of a source directory.
func (j *copyJob) mkdirAll(target string, fi fs.FileInfo, src *srcRoot) error {
	if target == "" || target == "." {
		return nil
	}
	if err := j.mkdirParents(target); err != nil {
		return err
	}
	return j.mkdirOne(j.up, target, target, fi, src)
}

// mkdirOne makes name in dd (target in the upper dir) the copy of the
// source directory fi.
func (j *copyJob) mkdirOne(dd *os.Root, name, target string, fi fs.FileInfo, src *srcRoot) error {
	if cur, err := dd.Lstat(name); err == nil && !cur.IsDir() {
		if err := dd.RemoveAll(name); err != nil {
			return err
		}
	}
	if err := dd.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	j.chown(dd, name, target, j.ownerFor(src, fi), false)
	if err := dd.Chmod(name, j.permFor(fi.Mode())); err != nil {
		return err
	}
	j.dirs = append(j.dirs, dirTimes{target, j.mtimeOf(fi)})
	return nil
}

// mkdirParents creates the parents of target in the upper dir. Parents that
// exist in the rootfs are copied with their metadata so the layer records
// them unchanged; new ones are 0755 and owned by --chown's user.
func (j *copyJob) mkdirParents(target string) error {
	dir := path.Dir(target)
	if dir == "." || dir == "/" || dir == "" {
		return nil
	}
	if fi, err := j.up.Lstat(dir); err == nil && fi.IsDir() {
		return nil
	}
	if err := j.mkdirParents(dir); err != nil {
		return err
	}
	if fi, err := j.up.Lstat(dir); err == nil {
		if fi.IsDir() {
			return nil
		}
		if err := j.up.Remove(dir); err != nil {
			return err
		}
	}
	mode, owner, mtime := fs.FileMode(0o755), idPair{}, j.e.copyTime()
	if j.owner != nil {
		owner = *j.owner
	}
	if j.rootfs != nil {
		if fi, err := j.rootfs.Lstat(dir); err == nil && fi.IsDir() {
			mode = fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
			mtime = fi.ModTime()
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				owner = idPair{int(st.Uid), int(st.Gid)}
			}
		}
	}
	if err := j.up.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("mkdir /%s: %w", dir, err)
	}
	j.chown(j.up, dir, dir, owner, false)
	if err := j.up.Chmod(dir, mode); err != nil {
		return err
	}
	j.dirs = append(j.dirs, dirTimes{dir, mtime})
	return nil
}

// finishDirs sets directory mtimes last, deepest first, since writing
// entries into a directory changes its mtime.
func (j *copyJob) finishDirs() error {
	sort.SliceStable(j.dirs, func(a, b int) bool { return len(j.dirs[a].rel) > len(j.dirs[b].rel) })
	for _, d := range j.dirs {
		if err := j.up.Chtimes(d.rel, d.t, d.t); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// unixMode converts permission bits as written in --chmod (with setuid,
// setgid and sticky in the octal high bits) to an fs.FileMode.
func unixMode(n uint32) fs.FileMode {
	m := fs.FileMode(n & 0o777)
	if n&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}
