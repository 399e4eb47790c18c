package executor

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/builder-dev/builder/compress"
	"github.com/builder-dev/builder/dockerfile"
	"github.com/builder-dev/builder/layer"
	"github.com/builder-dev/builder/snapshot"
)

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// isGitURL is what the front end takes for a git source.
func isGitURL(s string) bool { return dockerfile.IsGitSource(s) }

// fetchURL downloads an ADD URL into the upper dir. The file is 0600 as in
// docker unless --chmod says otherwise; its mtime is the Last-Modified time.
func (j *copyJob) fetchURL(ctx context.Context, raw, dest string, destIsDir bool) error {
	shown := dockerfile.RedactURL(raw) // never a password in a message
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("ADD %s: invalid URL", shown)
	}
	var check hash.Hash
	var want string
	if cs := j.step.Checksum; cs != "" {
		alg, hexSum, ok := strings.Cut(cs, ":")
		if !ok {
			return fmt.Errorf("--checksum %q: expected ALGORITHM:HEX", cs)
		}
		switch alg {
		case "sha256":
			check = sha256.New()
		case "sha384":
			check = sha512.New384()
		case "sha512":
			check = sha512.New()
		default:
			return fmt.Errorf("--checksum %q: unsupported algorithm %q", cs, alg)
		}
		want = strings.ToLower(hexSum)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return err
	}
	resp, err := j.e.cfg.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("ADD %s: %w", shown, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("ADD %s: unexpected HTTP status %s", shown, resp.Status)
	}
	name := path.Base(u.Path)
	if name == "/" || name == "." || name == "" {
		name = "index.html"
	}
	target := dest
	if destIsDir {
		target = path.Join(dest, name)
	}
	mtime := time.Time{}
	if lm, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		mtime = lm
	}
	owner := idPair{}
	if j.owner != nil {
		owner = *j.owner
	}
	var body io.Reader = resp.Body
	if check != nil {
		body = io.TeeReader(resp.Body, check)
	}
	if err := j.writeFile(target, body, 0o600, owner, mtime); err != nil {
		return err
	}
	if check != nil {
		if got := fmt.Sprintf("%x", check.Sum(nil)); got != want {
			j.up.Remove(target)
			return fmt.Errorf("ADD %s: checksum mismatch: expected %s, got %s:%s", shown, j.step.Checksum, strings.SplitN(j.step.Checksum, ":", 2)[0], got)
		}
	}
	return nil
}

// maybeExtract unpacks a local tar archive (plain, gzip, bzip2, xz or zstd)
// into dest, as ADD does. It reports false when the file is not an archive.
func (j *copyJob) maybeExtract(ctx context.Context, src *srcRoot, rel, dest string) (bool, error) {
	f, err := src.FS.Open(rel)
	if err != nil {
		return false, err
	}
	defer f.Close()
	dz, _, err := compress.Decompress(bufio.NewReaderSize(f, 64<<10))
	if err != nil {
		return false, nil // not a compressed stream we know: copy it as a file
	}
	zr := layer.Limit(dz, j.e.cfg.MaxLayerSize, "archive "+rel)
	br := bufio.NewReaderSize(zr, 64<<10)
	head, _ := br.Peek(512)
	if !isTarHeader(head) {
		return false, nil
	}
	if err := j.mkdirParents(path.Join(dest, "x")); err != nil {
		return true, err
	}
	if dest != "" && dest != "." {
		if fi, err := j.up.Lstat(dest); err != nil || !fi.IsDir() {
			if err := j.up.MkdirAll(dest, 0o755); err != nil {
				return true, err
			}
		}
	}
	root := filepath.Join(j.up.Name(), filepath.FromSlash(dest))
	_, err = snapshot.Apply(ctx, root, br, snapshot.ApplyOptions{
		NoWhiteouts:       true,
		NoChown:           !j.e.chownOK,
		IgnoreChownErrors: true,
		IgnoreXattrErrors: true,
		SkipDevices:       true,
		MapOwner:          j.archiveOwner(),
	})
	if err != nil {
		return true, fmt.Errorf("extract %s: %w", rel, err)
	}
	return true, nil
}

// archiveOwner applies --chown to extracted entries.
func (j *copyJob) archiveOwner() func(int, int) (int, int) {
	if j.owner == nil {
		return nil
	}
	o := *j.owner
	return func(int, int) (int, int) { return o.UID, o.GID }
}

// isTarHeader reports whether b starts with a valid tar header block.
func isTarHeader(b []byte) bool {
	if len(b) < 512 {
		return false
	}
	if string(b[257:262]) == "ustar" {
		return true
	}
	_, err := tar.NewReader(strings.NewReader(string(b))).Next()
	return err == nil || err == io.ErrUnexpectedEOF
}
