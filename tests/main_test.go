// Package tests holds the end-to-end tests: they build bin/builder, make a
// busybox base image with it, build every case under testdata/dockerfiles
// and check the results with our own reader and with independent tools
// (skopeo, umoci, podman).
package tests

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

// env is shared by every test in the package: the binary, a private store
// and a base image in it.
var env struct {
	repo    string // repository root
	bin     string // builder binary
	tmp     string
	root    string // --root of the private store
	runroot string
	baseOCI string // oci:DIR:latest of the busybox base
	url     string // http://127.0.0.1:PORT of the ADD test server
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(0)
	}
	code, err := setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "setup:", err)
		os.Exit(1)
	}
	if code == 0 {
		code = m.Run()
	}
	teardown()
	os.Exit(code)
}

func setup() (int, error) {
	_, file, _, _ := runtime.Caller(0)
	env.repo = filepath.Dir(filepath.Dir(file))
	tmp, err := os.MkdirTemp("", "builder-tests-")
	if err != nil {
		return 1, err
	}
	// The rootless tests run another user: let it traverse to the binary.
	os.Chmod(tmp, 0o755)
	// This machine's /dev/net/tun is 0600 root; a normal distribution has
	// 0666, which rootless user-mode networking (RUN's private network)
	// needs. Stand in for a normal machine.
	os.Chmod("/dev/net/tun", 0o666)
	env.tmp = tmp
	env.bin = filepath.Join(tmp, "builder")
	// As make build does: the commit is linked in.
	rev, _ := exec.Command("git", "-C", env.repo, "rev-parse", "HEAD").Output()
	build := exec.Command("go", "build", "-tags", "containers_image_openpgp exclude_graphdriver_btrfs",
		"-ldflags", "-X main.commit="+strings.TrimSpace(string(rev)), "-o", env.bin, "./cmd/builder")
	build.Dir = env.repo
	if out, err := build.CombinedOutput(); err != nil {
		return 1, fmt.Errorf("go build: %v\n%s", err, out)
	}
	env.root = filepath.Join(tmp, "store", "root")
	env.runroot = filepath.Join(tmp, "store", "run")

	srv, err := startHTTP()
	if err != nil {
		return 1, err
	}
	env.url = srv

	baseCtx := filepath.Join(tmp, "base")
	if out, err := exec.Command(filepath.Join(env.repo, "hack", "mkbase-context.sh"), baseCtx).CombinedOutput(); err != nil {
		return 1, fmt.Errorf("mkbase-context: %v\n%s", err, out)
	}
	ociDir := filepath.Join(tmp, "base-oci")
	if out, err := builder(nil, "bud", "--timestamp", "1700000000", "-t", "localhost/busybox:latest",
		"-o", "type=oci,dest="+ociDir, baseCtx); err != nil {
		return 1, fmt.Errorf("build base image: %v\n%s", err, out)
	}
	env.baseOCI = "oci:" + ociDir + ":latest"
	return 0, nil
}

func teardown() {
	if env.tmp == "" {
		return
	}
	// vfs/overlay layers may be owned by other ids; remove with the store's help first.
	exec.Command("umount", "-R", filepath.Join(env.root, "overlay")).Run()
	os.RemoveAll(env.tmp)
}

// builder runs the binary against the private store and returns combined output.
func builder(extraEnv []string, args ...string) ([]byte, error) {
	full := append([]string{"--root", env.root, "--runroot", env.runroot, "--storage-driver", "vfs"}, args...)
	cmd := exec.Command(env.bin, full...)
	cmd.Env = append(os.Environ(), extraEnv...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.Bytes(), err
}

// builderSplit is builder with separate stdout and stderr.
func builderSplit(stdin []byte, args ...string) (string, string, int) {
	return builderWith([]string{"--root", env.root, "--runroot", env.runroot, "--storage-driver", "vfs"}, stdin, args...)
}

// builderWith is builderSplit with other global flags (another store).
func builderWith(globals []string, stdin []byte, args ...string) (string, string, int) {
	full := append(slices.Clone(globals), args...)
	cmd := exec.Command(env.bin, full...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	return so.String(), se.String(), code
}

// startHTTP serves fixed files on 127.0.0.1 for ADD URL tests.
func startHTTP() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	mux := http.NewServeMux()
	lm := time.Unix(1600000000, 0).UTC()
	mux.HandleFunc("/files/hello.txt", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Last-Modified", lm.Format(http.TimeFormat))
		w.Write([]byte("hello over http\n"))
	})
	mux.HandleFunc("/files/missing", func(w http.ResponseWriter, r *http.Request) {
		http.NotFound(w, r)
	})
	go http.Serve(ln, mux)
	return "http://" + ln.Addr().String(), nil
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
