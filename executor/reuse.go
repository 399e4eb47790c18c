package executor

import (
	"io/fs"
	"os"
	"slices"
	"syscall"

	"github.com/builder-dev/builder/cache"
	"github.com/builder-dev/builder/dockerfile"
	"github.com/builder-dev/builder/executor/selection"
	"github.com/builder-dev/builder/snapshot"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// A COPY from the context that misses the cache because some of its files
// changed is, most of the time, the same COPY as an earlier build's with a
// few files edited. The earlier layer's tree is still on disk (a layer of
// an image in the store): every file whose entry digest (place, type, mode,
// size, content) is the one it had then, and whose copy there has exactly
// the metadata this COPY would give it, is hard-linked from that tree
// instead of written again. Layers are never written once committed, so
// sharing inodes between them is safe, and the new layer's tar is made from
// its own tree as always: byte for byte a fresh build's.

// reuse is an earlier build's layer of the same step.
type reuse struct {
	root     *os.Root                 // its tree
	old, cur map[string]digest.Digest // entry digests then and now, by source path
}

// previousCopy finds the latest cached run of the same COPY on the same
// parent whose layer tree is still on disk, with its file list.
func (e *Executor) previousCopy(s *stageState, step dockerfile.Step, k keyed) *reuse {
	c, ok := step.(*dockerfile.Copy)
	if !ok || c.Add || c.Link || k.files == nil || e.cfg.Cache == nil || e.cfg.NoCache || !e.chownOK {
		return nil
	}
	tf, ok := e.cfg.Snapshots.(snapshot.TreeFinder)
	if !ok {
		return nil
	}
	// The latest run first; a file list is read only for a run whose tree
	// is still there (each list names every file of the COPY).
	var runs []cache.Record
	for _, r := range e.cfg.Cache.Children(s.key) {
		if r.Step == step.String() && r.Key != k.key.Hex() && r.DiffID != "" {
			runs = append(runs, r)
		}
	}
	slices.SortFunc(runs, func(a, b cache.Record) int { return b.Created.Compare(a.Created) })
	for _, r := range runs {
		dir, ok := tf.Tree(r.DiffID)
		if !ok {
			continue
		}
		files := e.cfg.Cache.Files(mustKey(r.Key))
		if files == nil {
			continue // a content-key twin: its input-key entry has the list
		}
		root, err := os.OpenRoot(dir)
		if err != nil {
			return nil
		}
		return &reuse{root: root, old: files, cur: k.files}
	}
	return nil
}

// copyDir is a copied directory's state during the walk: the directory in
// the new layer, and the same directory in the earlier tree (nil: none).
type copyDir struct {
	root *os.Root
	fd   *os.File // root's directory, for linkat
	prev *os.File
}

func (d *copyDir) close() {
	d.root.Close()
	if d.fd != nil {
		d.fd.Close()
	}
	if d.prev != nil {
		d.prev.Close()
	}
}

// openCopyDir opens the directory name in dd (target in the layer) and,
// when reusing, its twin in the earlier tree.
func (j *copyJob) openCopyDir(dd *os.Root, name, target string) (*copyDir, error) {
	r, err := dd.OpenRoot(name)
	if err != nil {
		return nil, err
	}
	d := &copyDir{root: r}
	if j.reuse != nil {
		if prev, err := j.reuse.root.Open(cmpDot(target)); err == nil {
			if fd, err := r.Open("."); err == nil {
				d.fd, d.prev = fd, prev
			} else {
				prev.Close()
			}
		}
	}
	return d, nil
}

func cmpDot(p string) string {
	if p == "" {
		return "."
	}
	return p
}

// linkUnchanged links entry e (a regular file of the context) from the
// earlier tree into dir when it is unchanged there; false means copy it.
func (j *copyJob) linkUnchanged(dir *copyDir, e *selection.Entry, src *srcRoot) bool {
	if j.reuse == nil || dir.prev == nil || !e.Info.Mode().IsRegular() {
		return false
	}
	st, ok := e.Info.Sys().(*syscall.Stat_t)
	if !ok || st.Nlink > 1 { // hard links of the source are kept by the copy itself
		return false
	}
	if d, ok := j.reuse.old[e.Rel]; !ok || d != j.reuse.cur[e.Rel] {
		return false
	}
	var p unix.Stat_t
	if unix.Fstatat(int(dir.prev.Fd()), e.Name, &p, unix.AT_SYMLINK_NOFOLLOW) != nil || p.Mode&unix.S_IFMT != unix.S_IFREG {
		return false
	}
	owner := j.ownerFor(src, e.Info)
	mtime := j.mtimeOf(e.Info)
	if p.Size != e.Info.Size() || fs.FileMode(p.Mode&0o777) != j.permFor(e.Info.Mode())&fs.ModePerm ||
		p.Mode&(unix.S_ISUID|unix.S_ISGID|unix.S_ISVTX) != specialBits(j.permFor(e.Info.Mode())) ||
		int(p.Uid) != owner.UID || int(p.Gid) != owner.GID ||
		p.Mtim.Sec != mtime.Unix() || p.Mtim.Nsec != int64(mtime.Nanosecond()) {
		return false
	}
	// EEXIST (something is there already) leaves it to the copy.
	return unix.Linkat(int(dir.prev.Fd()), e.Name, int(dir.fd.Fd()), e.Name, 0) == nil
}

func specialBits(m fs.FileMode) uint32 {
	var b uint32
	if m&fs.ModeSetuid != 0 {
		b |= unix.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		b |= unix.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		b |= unix.S_ISVTX
	}
	return b
}
