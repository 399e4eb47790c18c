package executor

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/builder-dev/builder/dockerfile"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Secret is one --secret id=ID,src=FILE|env=VAR.
type Secret struct {
	File string // read at use; never copied into a layer or a cache key
	Env  string // or the value of this environment variable
}

// runMount resolves one RUN --mount.
func (e *Executor) runMount(ctx context.Context, m dockerfile.Mount, done map[int]*stageState, tmp string, u userInfo) (*specs.Mount, func(), error) {
	switch m.Type {
	case "bind":
		return e.bindMount(ctx, m, done, tmp)
	case "cache":
		return e.cacheMount(ctx, m, done, tmp)
	case "tmpfs":
		opts := []string{"nosuid", "nodev", "mode=1777"}
		if m.Size > 0 {
			opts = append(opts, fmt.Sprintf("size=%d", m.Size))
		}
		return &specs.Mount{Destination: m.Target, Type: "tmpfs", Source: "tmpfs", Options: opts}, nil, nil
	case "secret":
		return e.secretMount(m, tmp, u)
	case "ssh":
		sock, ok := e.cfg.SSH[m.CacheID]
		if !ok {
			if !m.Required {
				return nil, nil, nil // BuildKit leaves an optional agent out
			}
			return nil, nil, fmt.Errorf("no ssh agent %q forwarded: pass --ssh %s (the agent of $SSH_AUTH_SOCK) or --ssh %s=SOCKET", m.CacheID, m.CacheID, m.CacheID)
		}
		return &specs.Mount{Destination: m.Target, Type: "bind", Source: sock, Options: []string{"bind", "nosuid", "nodev", "noexec"}}, nil, nil
	default:
		return nil, nil, fmt.Errorf("unknown mount type %q", m.Type)
	}
}

// mountSource opens the root a mount reads from (from=).
func (e *Executor) mountSource(ctx context.Context, m dockerfile.Mount, done map[int]*stageState) (src *srcRoot, release func(), err error) {
	release = func() {}
	switch m.From.Kind {
	case dockerfile.SourceContext:
		src = e.contextSource()
	case dockerfile.SourceStage:
		st, ok := done[m.From.Stage]
		if !ok {
			return nil, nil, fmt.Errorf("from: stage %d has not been built", m.From.Stage)
		}
		if src, release, err = e.openStateRoot(ctx, st, fmt.Sprintf("stage %d", m.From.Stage)); err != nil {
			return nil, nil, err
		}
	default:
		if named, ok, err := e.namedDir(m.From.Image); ok || err != nil {
			if err != nil {
				return nil, nil, err
			}
			src = named
			break
		}
		st, err := e.imageState(ctx, m.From.Image, e.platform)
		if err != nil {
			return nil, nil, err
		}
		if src, release, err = e.openStateRoot(ctx, st, "image "+m.From.Image); err != nil {
			return nil, nil, err
		}
	}
	return src, release, nil
}

func (e *Executor) bindMount(ctx context.Context, m dockerfile.Mount, done map[int]*stageState, tmp string) (*specs.Mount, func(), error) {
	src, release, err := e.mountSource(ctx, m, done)
	if err != nil {
		return nil, nil, err
	}
	it, err := src.Item(m.Source)
	if err != nil {
		return nil, release, fmt.Errorf("source %s: %w", m.Source, err)
	}
	// The mount shows what the selection walker selects, as the step's
	// cache key covers it: without ignore rules the source itself (its
	// path has no symlink left, so it stays inside the root), else a view
	// of the selection. A writable bind must not change the context or a
	// stage: writes go to a private copy that is thrown away, as with
	// BuildKit.
	source, err := filepath.Abs(filepath.Join(src.FS.Name(), filepath.FromSlash(it.Real)))
	if err != nil {
		return nil, release, err
	}
	if src.Ignore != nil || !m.ReadOnly {
		source = filepath.Join(tmp, "bind-"+shortHash(m.Target))
		if err := e.materialize(ctx, src, &it, source, m.ReadOnly); err != nil {
			return nil, release, err
		}
	}
	opts := []string{"rbind"}
	if m.ReadOnly {
		opts = append(opts, "ro")
	}
	return &specs.Mount{Destination: m.Target, Type: "bind", Source: source, Options: opts}, release, nil
}

// cacheMount gives a directory that persists across builds, keyed by id.
func (e *Executor) cacheMount(ctx context.Context, m dockerfile.Mount, done map[int]*stageState, tmp string) (*specs.Mount, func(), error) {
	if e.cfg.CacheMounts == "" {
		return nil, nil, fmt.Errorf("no cache mount directory configured")
	}
	id := m.CacheID
	if id == "" {
		id = m.Target
	}
	dir := filepath.Join(e.cfg.CacheMounts, shortHash(id))
	// Stages running at once may use the same cache: one creates it.
	e.mountMu.Lock()
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		e.importMount(ctx, id, dir) // a fresh machine: start from the registry's copy
	}
	if _, err := os.Stat(dir); os.IsNotExist(err) && (m.Source != "" || m.From.Kind != dockerfile.SourceImage || m.From.Image != "scratch") {
		// A new cache starts as a copy of from=,source=, as in BuildKit.
		if err := e.seedCache(ctx, m, done, tmp, dir); err != nil {
			e.mountMu.Unlock()
			return nil, nil, fmt.Errorf("seeding the cache from %s: %w", m.Source, err)
		}
	}
	err := os.MkdirAll(dir, 0o755)
	e.mountMu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	e.mu.Lock()
	e.mountsUsed[id] = dir
	e.mu.Unlock()
	var release func()
	switch m.Sharing {
	case "locked", "private":
		lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, nil, err
		}
		how := unix.LOCK_EX
		if m.Sharing == "private" {
			how |= unix.LOCK_NB
		}
		if err := unix.Flock(int(lock.Fd()), how); err != nil {
			lock.Close()
			if m.Sharing != "private" {
				return nil, nil, err
			}
			// private and in use: this RUN gets a fresh, throwaway cache.
			d, err := os.MkdirTemp(e.cfg.WorkDir, "cache-private-")
			if err != nil {
				return nil, nil, err
			}
			dir, release = d, func() { os.RemoveAll(d) }
			break
		}
		release = func() { unix.Flock(int(lock.Fd()), unix.LOCK_UN); lock.Close() }
	}
	// First use: apply uid/gid/mode (defaults 0:0 0755).
	if entries, _ := os.ReadDir(dir); len(entries) == 0 {
		applyOwnerMode(dir, m, 0o755)
	}
	opts := []string{"rbind"}
	if m.ReadOnly {
		opts = append(opts, "ro")
	}
	return &specs.Mount{Destination: m.Target, Type: "bind", Source: dir, Options: opts}, release, nil
}

// secretMount exposes --secret data as a read-only file (or env var)
// for one RUN only.
func (e *Executor) secretMount(m dockerfile.Mount, tmp string, u userInfo) (*specs.Mount, func(), error) {
	id := m.CacheID
	data, ok, err := e.secretValue(m)
	if err != nil || !ok {
		return nil, nil, err
	}
	if e.cfg.SecretsDir == "" {
		return nil, nil, fmt.Errorf("secret %q: no tmpfs to keep it on (builder could not mount one, and its run root is not on tmpfs); secrets are never written to disk", id)
	}
	f, err := os.CreateTemp(e.cfg.SecretsDir, "secret-")
	if err != nil {
		return nil, nil, err
	}
	p := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(p)
		return nil, nil, err
	}
	applyOwnerMode(p, m, 0o400)
	release := func() { os.Remove(p) }
	return &specs.Mount{Destination: m.Target, Type: "bind", Source: p, Options: []string{"bind", "ro"}}, release, nil
}

// secretValue reads a --secret's data; ok is false for a missing secret
// that is not required.
func (e *Executor) secretValue(m dockerfile.Mount) ([]byte, bool, error) {
	id := m.CacheID
	sec, ok := e.cfg.Secrets[id]
	if !ok {
		if m.Required {
			return nil, false, fmt.Errorf("secret %q not provided (use --secret id=%s,src=FILE)", id, id)
		}
		return nil, false, nil
	}
	if sec.File != "" {
		b, err := os.ReadFile(sec.File)
		if err != nil {
			return nil, false, fmt.Errorf("secret %q: %w", id, err)
		}
		return b, true, nil
	}
	v, set := os.LookupEnv(sec.Env)
	if !set {
		return nil, false, fmt.Errorf("secret %q: environment variable %s is not set", id, sec.Env)
	}
	return []byte(v), true, nil
}

// applyOwnerMode gives p the mount's uid, gid and mode (default 0:0 and
// def). Best effort: without a subordinate range other ids cannot be set.
func applyOwnerMode(p string, m dockerfile.Mount, def fs.FileMode) {
	uid, gid, mode := 0, 0, def
	if m.UID != nil {
		uid = int(*m.UID)
	}
	if m.GID != nil {
		gid = int(*m.GID)
	}
	if m.Mode != nil {
		mode = fs.FileMode(*m.Mode) & fs.ModePerm
	}
	os.Lchown(p, uid, gid)
	os.Chmod(p, mode)
}

func shortHash(s string) string {
	return fmt.Sprintf("%x", sha256.Sum256([]byte(s)))[:24]
}

// seedCache fills the new cache directory dir with what from=,source=
// names: copied beside dir and renamed into place, so a failure leaves no
// half-seeded cache.
func (e *Executor) seedCache(ctx context.Context, m dockerfile.Mount, done map[int]*stageState, tmp, dir string) error {
	src, release, err := e.mountSource(ctx, m, done)
	if err != nil {
		return err
	}
	defer release()
	it, err := src.Item(m.Source)
	if err != nil {
		return err
	}
	if !it.Info.IsDir() {
		return fmt.Errorf("%s is not a directory", m.Source)
	}
	seed := filepath.Join(tmp, "cache-seed-"+shortHash(m.Target))
	if err := e.materialize(ctx, src, &it, seed, false); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	return os.Rename(seed, dir)
}
