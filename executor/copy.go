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
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/builder-dev/builder/dockerfile"
	"github.com/builder-dev/builder/executor/selection"
	"github.com/builder-dev/builder/platform"
	"github.com/builder-dev/builder/snapshot"
	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
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
	// reuse: an earlier build's layer of this step, to link unchanged
	// files from (nil: none).
	reuse *reuse
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

// srcRoot is where a step reads from: a selection root (the build
// context with its .dockerignore, a stage, an image) and how its files are
// taken over.
type srcRoot struct {
	selection.Root
	keepOwner bool // stage/image sources keep their ownership
	context   bool // the build context
}

// contextSource is the build context as a step source.
func (e *Executor) contextSource() *srcRoot {
	return &srcRoot{Root: selection.Root{FS: e.ctxRoot, Ignore: e.cfg.Ignore, What: "build context"}, context: true}
}

func (e *Executor) runCopy(ctx context.Context, s *stageState, c *dockerfile.Copy, done map[int]*stageState) error {
	m, view, err := e.prepareCopy(ctx, s, c)
	if err != nil {
		return err
	}
	defer m.Release()
	up, err := os.OpenRoot(m.Root())
	if err != nil {
		return err
	}
	defer up.Close()
	rootfs := up
	if view != m.Root() {
		if rootfs, err = os.OpenRoot(view); err != nil {
			return err
		}
		defer rootfs.Close()
	}

	// Files are written into the snapshot (the new layer's directory, or
	// the merged mount); the driver's diff finds them (and the parents they
	// touched) for the layer.
	job := &copyJob{e: e, step: c, up: up, rootfs: rootfs, links: map[[2]uint64]string{}}
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
	if s.reuse != nil && src.context && view != m.Root() {
		job.reuse = s.reuse // only into a directory written directly
	}
	if err := job.run(ctx, src); err != nil {
		return err
	}
	up.Close()
	rootfs.Close()
	return e.commitMount(ctx, s, m, e.createdBy(c))
}

// prepareCopy prepares the snapshot a COPY writes into and says where the
// stage's current rootfs can be read. Where the driver allows it, a COPY
// writes the new layer's directory directly, unmounted, and reads a view
// of the layers below (no overlay in the way of thousands of creates, and
// files an earlier build of the step made can be linked). ADD (archives,
// URLs, repositories extracted through the rootfs) and --link keep the
// merged mount.
func (e *Executor) prepareCopy(ctx context.Context, s *stageState, c *dockerfile.Copy) (snapshot.Mount, string, error) {
	if dp, ok := e.cfg.Snapshots.(snapshot.DirectPreparer); ok && !c.Add && !c.Link {
		m, view, err := dp.PrepareDirect(ctx, e.snapLayers(s.img.Layers))
		if err != nil {
			return nil, "", fmt.Errorf("prepare snapshot (%s): %w", e.cfg.Snapshots.Name(), err)
		}
		return m, view, nil
	}
	m, err := e.prepare(ctx, s)
	if err != nil {
		return nil, "", err
	}
	return m, m.Root(), nil
}

// createdBy is a step's history text; an ADD of a git repository names
// the commit it added (resolved before the step ran or hit).
func (e *Executor) createdBy(step dockerfile.Step) string {
	text := step.String()
	if c, ok := step.(*dockerfile.Copy); ok && c.Add {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, p := range c.Srcs {
			if commit, ok := e.gitCommits[p]; ok && isGitURL(p) {
				text += " # git commit " + commit
			}
		}
	}
	return text
}

// copySource opens the root a COPY reads from.
func (e *Executor) copySource(ctx context.Context, c *dockerfile.Copy, done map[int]*stageState) (*srcRoot, func(), error) {
	switch c.From.Kind {
	case dockerfile.SourceContext:
		return e.contextSource(), func() {}, nil
	case dockerfile.SourceStage:
		st, ok := done[c.From.Stage]
		if !ok {
			return nil, nil, fmt.Errorf("--from: stage %d has not been built", c.From.Stage)
		}
		return e.openStateRoot(ctx, st, fmt.Sprintf("stage %d", c.From.Stage))
	default:
		if src, ok, err := e.namedDir(c.From.Image); ok || err != nil {
			return src, func() {}, err
		}
		st, err := e.imageState(ctx, c.From.Image, c.Platform)
		if err != nil {
			return nil, nil, fmt.Errorf("--from=%s: %w", c.From.Image, err)
		}
		return e.openStateRoot(ctx, st, "image "+c.From.Image)
	}
}

// namedDir is the --build-context directory named name, as a step source
// (its files owned by root, as the context's); false when name is none.
func (e *Executor) namedDir(name string) (*srcRoot, bool, error) {
	nc, ok := e.cfg.NamedContexts[name]
	if !ok || nc.Dir == "" {
		return nil, false, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if r, ok := e.namedRoots[name]; ok {
		return &srcRoot{Root: selection.Root{FS: r, What: "build context " + name}}, true, nil
	}
	r, err := os.OpenRoot(nc.Dir)
	if err != nil {
		return nil, true, fmt.Errorf("build context %s: %w", name, err)
	}
	if e.namedRoots == nil {
		e.namedRoots = map[string]*os.Root{}
	}
	e.namedRoots[name] = r
	return &srcRoot{Root: selection.Root{FS: r, What: "build context " + name}}, true, nil
}

// imageState is an image used as a COPY or mount source.
func (e *Executor) imageState(ctx context.Context, ref string, p platform.Platform) (*stageState, error) {
	img, err := e.resolve(ctx, ref, p)
	if err != nil {
		if near := e.plan.SimilarStage(ref); near != "" {
			return nil, fmt.Errorf("no stage named %q (did you mean %q?), and no image %s: %w", ref, near, ref, err)
		}
		return nil, err
	}
	return &stageState{img: *img, platform: p}, nil
}

// openStateRoot gives read access to a stage's or image's file tree.
func (e *Executor) openStateRoot(ctx context.Context, st *stageState, what string) (*srcRoot, func(), error) {
	dir, release, err := e.cfg.Snapshots.View(ctx, e.snapLayers(st.img.Layers))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		release()
		return nil, nil, err
	}
	return &srcRoot{Root: selection.Root{FS: r, What: what}, keepOwner: true}, func() { r.Close(); release() }, nil
}

func (j *copyJob) run(ctx context.Context, src *srcRoot) error {
	c := j.step
	var urls, paths []string
	var gits []string
	for _, p := range c.Srcs {
		switch {
		case c.Add && isGitURL(p):
			gits = append(gits, p)
		case c.Add && isURL(p):
			urls = append(urls, p)
		default:
			paths = append(paths, p)
		}
	}
	items, err := src.Items(paths, c.Parents)
	if err != nil {
		return err
	}
	excludes, err := selection.NewExcludes(c.Excludes)
	if err != nil {
		return err
	}
	n := len(items) + len(urls) + len(c.Inline) + len(gits)
	if n == 0 && len(paths) > 0 && !slices.ContainsFunc(paths, func(p string) bool { return !selection.HasMeta(p) }) {
		// Only wildcards, matching nothing: BuildKit copies nothing, and
		// makes a destination directory.
		if strings.HasSuffix(c.Dest, "/") {
			dest, err := j.resolveDest(c.Dest)
			if err != nil {
				return err
			}
			if err := j.mkdirAll(dest); err != nil {
				return err
			}
			return j.finishDirs()
		}
		return nil
	}
	if n == 0 {
		return errors.New("no source files were specified")
	}
	// A repository's files go into dest, a directory, as in BuildKit.
	destIsDir := strings.HasSuffix(c.Dest, "/") || c.Parents || len(gits) > 0
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
	for i := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := j.copyItem(ctx, src, &items[i], dest, destIsDir, excludes); err != nil {
			return err
		}
	}
	for _, u := range urls {
		if err := j.fetchURL(ctx, u, dest, destIsDir); err != nil {
			return err
		}
	}
	for _, g := range gits {
		if err := j.addGit(ctx, g, dest, excludes); err != nil {
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
	// The whole path resolved inside the rootfs, its last element too when
	// it is a symlink, as BuildKit does: COPY f /etc/app writes into the
	// directory /etc/app links to (an absolute link included), and a
	// dangling link's target is created, never the link replaced.
	real, err := securejoin.SecureJoin(j.rootfs.Name(), clean)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", dest, err)
	}
	return strings.TrimPrefix(strings.TrimPrefix(real, j.rootfs.Name()), "/"), nil
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

// copyItem copies one matched source to its place under dest: a file as
// itself, a directory with what the selection walker finds below it.
func (j *copyJob) copyItem(ctx context.Context, src *srcRoot, it *selection.Item, dest string, destIsDir bool, excludes *selection.Excludes) error {
	// The source path itself was followed if it is a symlink (docker copies
	// the target); links inside copied directories are kept as links.
	fi := it.Info
	target := dest
	if it.Keep != "" {
		target = path.Join(dest, it.Keep)
	} else if !fi.IsDir() && destIsDir {
		target = path.Join(dest, path.Base(it.Rel))
	}
	if !fi.IsDir() {
		if j.step.Add && (j.step.Unpack == nil || *j.step.Unpack) {
			if ok, err := j.maybeExtract(ctx, src, it.Real, dest); ok || err != nil {
				return err
			}
		}
		if err := j.mkdirParents(target); err != nil {
			return err
		}
		return j.copyEntry(src.FS, it.Real, it.Rel, j.up, target, target, src, fi)
	}
	// Every directory is opened once, and every entry is reached from its
	// directory by name alone: one *at call per operation instead of a
	// walk from the root for each (20,000 files made ~22 openat each).
	return src.Walk(ctx, it, excludes, selection.Visitor{
		Visit: func(e *selection.Entry) error { return j.copyWalked(src, e, target) },
		Leave: func(e *selection.Entry) {
			if d, ok := e.State.(*copyDir); ok {
				d.close()
			}
		},
	})
}

// copyWalked copies one entry of a copied directory whose copy is target;
// a directory's State is its open copy.
func (j *copyJob) copyWalked(src *srcRoot, e *selection.Entry, target string) error {
	t := path.Join(target, e.Sub)
	dd, name := j.up, t // reached from the upper dir's root ...
	switch {
	case e.Parent == nil:
		if err := j.mkdirAll(t); err != nil {
			return err
		}
		name = cmp.Or(t, ".")
	case e.Implied:
		// Re-included below an ignored directory: its parents are new.
		if err := j.mkdirParents(t); err != nil {
			return err
		}
	default:
		parent := e.Parent.State.(*copyDir)
		if j.linkUnchanged(parent, e, src) {
			return nil // the earlier build's copy of the same file
		}
		dd, name = parent.root, e.Name // ... or from its open parent
	}
	if !e.Info.IsDir() {
		return j.copyEntry(e.Dir, e.Name, e.Rel, dd, name, t, src, e.Info)
	}
	if e.Parent != nil {
		if err := j.mkdirOne(dd, name, t, e.Info, src); err != nil {
			return err
		}
	}
	d, err := j.openCopyDir(dd, name, t)
	if err != nil {
		return err
	}
	e.State = d
	return nil
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
		return fmt.Errorf("%s: %s: unsupported file type %s", src.What, srel, fi.Mode().Type())
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
		if o.UID == 0 && o.GID == 0 {
			return // root's, as the layer writer reads an unrecorded owner here
		}
		// No id range to chown into: the owner is recorded beside the file
		// and the layer writer puts it in the tar header.
		err := errors.New("a symlink cannot record its owner")
		if !link {
			err = recordOwner(dd, name, o)
		}
		if err != nil && j.e.warnOnce() {
			j.e.cfg.Log.Warn("ownership other than root cannot be stored here (no subordinate id range); left as root's", "path", "/"+target, "owner", fmt.Sprintf("%d:%d", o.UID, o.GID), "err", err)
		}
		return
	}
	var err error
	if link {
		err = dd.Lchown(name, o.UID, o.GID)
	} else {
		err = dd.Chown(name, o.UID, o.GID)
	}
	if err != nil && j.e.warnOnce() {
		j.e.cfg.Log.Warn("cannot set ownership", "path", "/"+target, "err", err)
	}
}

// mkdirAll makes target, the directory a copied directory's contents go
// into, as BuildKit does (fsutil's prepareTargetDir): an existing
// directory is left as it is (COPY dir /tmp/ keeps /tmp's 1777 and its
// owner, even with --chown), its mtime too, so that the layer does not
// depend on when it was built; a new one is 0755 (--chmod's mode when
// given, BuildKit issue 4945; its new parents stay 0755), owned by
// --chown's user or root, whatever the source directory's mode.
func (j *copyJob) mkdirAll(target string) error {
	if target == "" || target == "." {
		return nil
	}
	if j.existsDir(target) {
		if _, err := j.up.Lstat(target); err != nil && j.rootfs != nil && j.rootfs != j.up {
			// Only in the layers below (a COPY written unmounted): brought
			// up with its metadata, as overlay's copy-up would.
			return j.mkdirParents(path.Join(target, "x"))
		}
		if cur, err := j.up.Stat(target); err == nil {
			j.dirs = append(j.dirs, dirTimes{target, cur.ModTime()}) // restored after the copy
		}
		return nil
	}
	if err := j.mkdirParents(target); err != nil {
		return err
	}
	if cur, err := j.up.Lstat(target); err == nil && !cur.IsDir() {
		if err := j.up.RemoveAll(target); err != nil {
			return err
		}
	}
	if err := j.up.Mkdir(target, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	owner := idPair{}
	if j.owner != nil {
		owner = *j.owner
	}
	j.chown(j.up, target, target, owner, false)
	if err := j.up.Chmod(target, j.permFor(0o755)); err != nil {
		return err
	}
	j.dirs = append(j.dirs, dirTimes{target, j.e.copyTime()})
	return nil
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

// recordOwner sets snapshot.OwnerXattr on name in dd.
func recordOwner(dd *os.Root, name string, o idPair) error {
	f, err := dd.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Fsetxattr(int(f.Fd()), snapshot.OwnerXattr, []byte(fmt.Sprintf("%d:%d", o.UID, o.GID)), 0)
}

// addGit copies a repository checkout's files into dest: owned by root
// (or --chown), the mtimes of context files (the checkout's own are the
// time of the fetch).
func (j *copyJob) addGit(ctx context.Context, src, dest string, excludes *selection.Excludes) error {
	dir, cleanup, err := j.e.fetchGit(ctx, src, j.step.KeepGitDir)
	if err != nil {
		return err
	}
	defer cleanup()
	r, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer r.Close()
	root := &srcRoot{Root: selection.Root{FS: r, What: "git " + dockerfile.RedactURL(src)}}
	items, err := root.Items([]string{"."}, false)
	if err != nil {
		return err
	}
	gj := *j
	gj.fromContext = true
	return gj.copyItem(ctx, root, &items[0], dest, true, excludes)
}
