package main

// Floors: what the hardware needs for the same data, measured in the same
// run. No builder can be faster than reading its context, compressing what
// it pushes, or starting a sandbox.

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/builder-dev/builder/compress"
)

// tarDir writes a tar of dir (contents read) to w; it returns the bytes of
// file content.
func tarDir(dir string, w io.Writer) (int64, error) {
	tw := tar.NewWriter(w)
	var content int64
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return 0, err
	}
	sort.Strings(paths)
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return 0, err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return 0, err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return 0, err
		}
		rel, _ := filepath.Rel(dir, p)
		h.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return 0, err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return 0, err
			}
			n, err := io.Copy(tw, f)
			f.Close()
			if err != nil {
				return 0, err
			}
			content += n
		}
	}
	return content, tw.Close()
}

// stat is min and median of repeated measurements (seconds or bytes).
type stat struct {
	Min    float64   `json:"min"`
	Median float64   `json:"median"`
	Runs   []float64 `json:"runs"`
}

func mkStat(v []float64) stat {
	if len(v) == 0 {
		return stat{}
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stat{Min: s[0], Median: med, Runs: v}
}

func timeN(n int, f func() error) (stat, error) {
	var v []float64
	for i := 0; i < n; i++ {
		t := time.Now()
		if err := f(); err != nil {
			return stat{}, err
		}
		v = append(v, time.Since(t).Seconds())
	}
	return mkStat(v), nil
}

// compressFloor times compressing data with kind (builder's own writer
// settings: pgzip -6 with 1 MiB blocks on every core, zstd -3).
func compressFloor(n int, data []byte, kind compress.Kind) (stat, int64, error) {
	var out int64
	s, err := timeN(n, func() error {
		cw := &countW{}
		w, err := compress.NewWriter(cw, kind, 0)
		if err != nil {
			return err
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		out = cw.n
		return nil
	})
	return s, out, err
}

type countW struct{ n int64 }

func (c *countW) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// caseFloors are one case's floors.
type caseFloors struct {
	ContextBytes  int64   `json:"context_bytes"` // file content in the context
	ContextTar    int64   `json:"context_tar_bytes"`
	TarContext    stat    `json:"tar_context_s"` // tar of the context to /dev/null
	PgzipContext  stat    `json:"pgzip_context_s"`
	ZstdContext   stat    `json:"zstd_context_s"`
	PgzipMBps     float64 `json:"pgzip_mb_per_s"`
	ZstdMBps      float64 `json:"zstd_mb_per_s"`
	LayerBytes    int64   `json:"layer_bytes"`    // uncompressed size of the image's own layers (builder's image)
	WriteLayers   stat    `json:"write_layers_s"` // writing them to a file in the work dir (page cache, no fsync)
	PgzipLayers   stat    `json:"pgzip_layers_s"` // compressing them: the push floor
	PgzipLayersTo int64   `json:"pgzip_layers_bytes"`
	HashContext   stat    `json:"hash_context_s"` // builder cache hash-context (every file read)
	// ExtractLayers is creating the own layers' files once, in a fresh
	// directory on the work disk (page cache, no fsync, no chown): what
	// any store that holds them must do at least once.
	ExtractLayers stat `json:"extract_layers_s"`
	// ExtractAfterWipe is the same creation right after a store filled by
	// the same build was deleted (once per repetition, before the tools'
	// cold builds after a wipe): what the file system makes any build pay then.
	ExtractAfterWipe stat `json:"extract_after_wipe_s"`
	// UploadLayers is a monolithic PUT of the pgzip'd own layers to the
	// bench's registry (a new repository each time): what a push costs
	// besides compressing, the registry's own work included.
	UploadLayers stat `json:"upload_layers_s"`
	Runs         int  `json:"run_steps"`
	EditRuns     int  `json:"run_steps_after_edit"`
}

func measureContextFloors(dir string, n int) (caseFloors, error) {
	var f caseFloors
	s, err := timeN(n, func() error {
		c, err := tarDir(dir, io.Discard)
		f.ContextBytes = c
		return err
	})
	if err != nil {
		return f, err
	}
	f.TarContext = s
	var buf bytes.Buffer
	if _, err := tarDir(dir, &buf); err != nil {
		return f, err
	}
	f.ContextTar = int64(buf.Len())
	if f.PgzipContext, _, err = compressFloor(n, buf.Bytes(), compress.Gzip); err != nil {
		return f, err
	}
	if f.ZstdContext, _, err = compressFloor(n, buf.Bytes(), compress.Zstd); err != nil {
		return f, err
	}
	mb := float64(buf.Len()) / 1e6
	if f.PgzipContext.Median > 0 {
		f.PgzipMBps = mb / f.PgzipContext.Median
	}
	if f.ZstdContext.Median > 0 {
		f.ZstdMBps = mb / f.ZstdContext.Median
	}
	return f, nil
}

// measureLayerFloor decompresses the image's own layers into memory and
// times writing them to a file in dir (what any build must store) and
// compressing them with pgzip (what a push must do). With platforms, the
// image is an index: the own layers of every platform's image, each
// distinct layer once.
func measureLayerFloor(f *caseFloors, layout, tag string, baseLayers int, platforms []string, n int, dir, registry string) error {
	if platforms == nil {
		platforms = []string{""}
	}
	var layers []ociDesc
	seen := map[string]bool{}
	for _, p := range platforms {
		ls, err := ownLayers(layout, tag, p, baseLayers)
		if err != nil {
			return err
		}
		for _, l := range ls {
			if !seen[l.Digest] {
				seen[l.Digest] = true
				layers = append(layers, l)
			}
		}
	}
	var all [][]byte
	for _, l := range layers {
		rc, err := openLayer(layout, l)
		if err != nil {
			return err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		all = append(all, data)
		f.LayerBytes += int64(len(data))
	}
	tmp := filepath.Join(dir, "floor-write.tmp")
	defer os.Remove(tmp)
	var times []float64
	for i := 0; i < n; i++ {
		os.Remove(tmp)
		syscall.Sync()
		t := time.Now()
		w, err := os.Create(tmp)
		if err != nil {
			return err
		}
		for _, d := range all {
			if _, err := w.Write(d); err != nil {
				w.Close()
				return err
			}
		}
		if err := w.Close(); err != nil {
			return err
		}
		times = append(times, time.Since(t).Seconds())
	}
	os.Remove(tmp)
	syscall.Sync()
	f.WriteLayers = mkStat(times)
	var err error
	f.PgzipLayers, err = timeN(n, func() error {
		f.PgzipLayersTo = 0
		for _, d := range all {
			cw := &countW{}
			w, err := compress.NewWriter(cw, compress.Gzip, 0)
			if err != nil {
				return err
			}
			w.Write(d)
			if err := w.Close(); err != nil {
				return err
			}
			f.PgzipLayersTo += cw.n
		}
		return nil
	})
	if err != nil {
		return err
	}
	var times2 []float64
	for i := 0; i < n; i++ {
		into := filepath.Join(dir, fmt.Sprintf("floor-extract-%d-%d", time.Now().UnixNano(), i))
		syscall.Sync()
		t := time.Now()
		for _, d := range all {
			if err := extractPlain(d, into); err != nil {
				return fmt.Errorf("extract floor: %w", err)
			}
		}
		times2 = append(times2, time.Since(t).Seconds())
		// Left in place (the run's work dir goes at the end): deleting them
		// now would slow the next measurement down (see removeStore).
	}
	f.ExtractLayers = mkStat(times2)
	if registry != "" {
		var gz [][]byte
		for _, d := range all {
			var buf bytes.Buffer
			w, err := compress.NewWriter(&buf, compress.Gzip, 0)
			if err != nil {
				return err
			}
			w.Write(d)
			w.Close()
			gz = append(gz, buf.Bytes())
		}
		i := 0
		f.UploadLayers, err = timeN(n, func() error {
			i++
			for j, b := range gz {
				if err := uploadBlob(registry, fmt.Sprintf("floor/upload-%d-%d-%d", time.Now().UnixNano(), i, j), b); err != nil {
					return fmt.Errorf("upload floor: %w", err)
				}
			}
			return nil
		})
	}
	return err
}

// extractPlain writes the entries of an uncompressed tar under dir:
// directories, regular files with their content, symlinks; nothing else
// (no owners, modes beyond permissions, times or whiteout handling).
func extractPlain(data []byte, dir string) error {
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			w, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			_, err = io.Copy(w, tr)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.Symlink(h.Linkname, p)
		}
	}
}

// uploadBlob sends b to registry (host:port, plain HTTP) as a new blob of
// repo: the Distribution API's POST, then one PUT with the whole body.
func uploadBlob(registry, repo string, b []byte) error {
	resp, err := http.Post("http://"+registry+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST upload: %s", resp.Status)
	}
	loc, err := resp.Location()
	if err != nil {
		return err
	}
	q := loc.Query()
	q.Set("digest", digestOf(b))
	loc.RawQuery = q.Encode()
	req, err := http.NewRequest(http.MethodPut, loc.String(), bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("PUT blob: %s", resp.Status)
	}
	return nil
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// sandboxFloor times an empty user-namespace sandbox: unshare of a user
// and mount namespace, an overlay mount over the base rootfs, chroot and
// exec of /bin/true (busybox), n times.
func sandboxFloor(work, lower string, n int) (stat, error) {
	dir := filepath.Join(work, "sandbox-floor")
	os.RemoveAll(dir)
	for _, d := range []string{"upper", "work", "merged"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return stat{}, err
		}
	}
	script := fmt.Sprintf("mount -t overlay overlay -o lowerdir=%s,upperdir=%s/upper,workdir=%s/work %s/merged && exec chroot %s/merged /bin/true",
		lower, dir, dir, dir, dir)
	run := func() error {
		out, err := exec.Command("unshare", "--user", "--map-root-user", "--mount", "--pid", "--fork", "sh", "-c", script).CombinedOutput()
		if err != nil {
			return fmt.Errorf("sandbox floor: %v: %s", err, out)
		}
		return nil
	}
	if err := run(); err != nil { // warm-up, and the check that it works
		return stat{}, err
	}
	return timeN(n, run)
}

// extractAfterWipe times creating the own layers' files of the image in
// layout in a fresh directory under dir, right after wipe (which fills a
// store with the same build and deletes it, as a tool's cold build after a
// wipe finds the disk). The directory is left in place. It returns seconds.
func extractAfterWipe(layout, tag string, baseLayers int, dir string, wipe func() error) (float64, error) {
	ls, err := ownLayers(layout, tag, "", baseLayers)
	if err != nil {
		return 0, err
	}
	var all [][]byte
	for _, l := range ls {
		rc, err := openLayer(layout, l)
		if err != nil {
			return 0, err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return 0, err
		}
		all = append(all, data)
	}
	if err := wipe(); err != nil {
		return 0, err
	}
	into := filepath.Join(dir, fmt.Sprintf("floor-after-wipe-%d", time.Now().UnixNano()))
	syscall.Sync()
	t := time.Now()
	for _, d := range all {
		if err := extractPlain(d, into); err != nil {
			return 0, err
		}
	}
	return time.Since(t).Seconds(), nil
}
