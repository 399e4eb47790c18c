package registry

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"go.podman.io/image/v5/types"
)

// defaultAuthFiles are the auth files containers/image reads when no file
// is named, in its order: the runtime dir's auth.json, the config dir's,
// Docker's config.json. (Docker's legacy ~/.dockercfg, read last, has
// another format and is left to containers/image.)
func defaultAuthFiles() []string {
	var files []string
	if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" {
		files = append(files, filepath.Join(rt, "containers", "auth.json"))
	} else {
		files = append(files, fmt.Sprintf("/run/containers/%d/auth.json", os.Getuid()))
	}
	home, _ := os.UserHomeDir()
	cfg := os.Getenv("XDG_CONFIG_HOME")
	if cfg == "" && home != "" {
		cfg = filepath.Join(home, ".config")
	}
	if cfg != "" {
		files = append(files, filepath.Join(cfg, "containers", "auth.json"))
	}
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		files = append(files, filepath.Join(d, "config.json"))
	} else if home != "" {
		files = append(files, filepath.Join(home, ".docker", "config.json"))
	}
	return files
}

// SkipUnreadableAuth keeps an auth file the user cannot read (root's,
// left by `sudo docker login`, or root's /run/containers/0 seen from a
// user namespace) from failing every pull and push: containers/image
// treats any error but "does not exist" as fatal. When no file was named
// and a default one is unreadable, sys reads only the first readable
// default file (or none) and the skipped file is reported. Login and
// logout keep containers/image's choice: they write.
func SkipUnreadableAuth(sys *types.SystemContext, log *slog.Logger) {
	if sys.AuthFilePath != "" || sys.DockerAuthConfig != nil {
		return
	}
	files := defaultAuthFiles()
	use, skipped := "", false
	for _, f := range files {
		err := readable(f)
		switch {
		case err == nil:
			if use == "" {
				use = f
			}
		case errors.Is(err, fs.ErrNotExist):
		default:
			skipped = true
			if log != nil {
				log.Warn("ignoring an auth file that cannot be read", "file", f, "error", err)
			}
		}
	}
	if !skipped {
		return
	}
	if use == "" {
		// A path that does not exist reads as "no credentials".
		use = filepath.Join(os.TempDir(), fmt.Sprintf("builder-no-auth-%d", os.Getuid()), "auth.json")
	}
	sys.AuthFilePath = use
}

// readable reports why f cannot be read as containers/image reads it.
func readable(f string) error {
	fh, err := os.Open(f)
	if err != nil {
		return err
	}
	defer fh.Close()
	if _, err := fh.Read(make([]byte, 1)); err != nil && err != io.EOF {
		return err
	}
	return nil
}
