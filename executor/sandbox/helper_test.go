package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// buildHelper compiles the helper program from these sources, as make
// build does.
func buildHelper(t *testing.T) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "helper")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./helper")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./helper: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	must(t, err)
	return b
}

// useHelper makes bin the helper for the rest of the test (nil: none).
func useHelper(t *testing.T, bin []byte) {
	resetHelper := func(open func() (io.ReadCloser, error)) {
		if helper.file != nil {
			helper.file.Close()
		}
		helper.file, helper.why, helper.once = nil, "", sync.Once{}
		helper.open = open
	}
	resetHelper(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(bin)), nil })
	t.Cleanup(func() { resetHelper(nil) })
}

// The sandbox's processes run the small helper program when it was built
// from the same sources, and this binary when it is stale or no program.
func TestHelper(t *testing.T) {
	needRoot(t)
	bin := buildHelper(t)
	for _, tc := range []struct {
		name   string
		bin    []byte
		hash   func() string // the caller's sources, as this binary sees them
		used   bool
		reason string
	}{
		{name: "built from these sources", bin: bin, used: true},
		{name: "stale", bin: bin, hash: func() string { return "other sources" }, reason: "other sources"},
		{name: "not a program", bin: []byte("#!/nonexistent\n"), reason: "does not run"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			useHelper(t, tc.bin)
			if tc.hash != nil {
				saved := sourceHash
				sourceHash = tc.hash
				t.Cleanup(func() { sourceHash = saved })
			}
			used, why := HelperStatus()
			if used != tc.used || !strings.Contains(why, tc.reason) {
				t.Fatalf("HelperStatus = %v, %q; want %v, %q", used, why, tc.used, tc.reason)
			}
			// A RUN works either way, in its namespaces.
			root := busyboxRootfs(t, true)
			r := run(t, newSandbox(t, IsolationDefault), SpecOptions{Rootfs: root, Args: []string{"/bin/sh", "-c", "echo $$; cat /proc/self/cmdline | tr '\\0' ' '"}})
			if r.err != nil || !strings.HasPrefix(r.stdout, "1\n") {
				t.Fatalf("RUN: %v\nstdout %q\nstderr %q", r.err, r.stdout, r.stderr)
			}
		})
	}
}

// The whole RUN suite through the helper (TestRun runs it through this
// binary).
func TestRunThroughHelper(t *testing.T) {
	needRoot(t)
	useHelper(t, buildHelper(t))
	if used, why := HelperStatus(); !used {
		t.Fatalf("the helper is not used: %s", why)
	}
	TestRun(t)
}

// make build appends the helper to builder's binary with a trailer that
// says its size; anything else is no helper, or a damaged one.
func TestAppendedHelper(t *testing.T) {
	trailer := func(n int) string { return fmt.Sprintf("%s%016x", helperMagic, n) }
	for _, tc := range []struct {
		name, file, want string
		err              error // nil, fs.ErrNotExist, or any error (errBad)
	}{
		{name: "appended", file: "ELF...program" + "HELPER" + trailer(6), want: "HELPER"},
		{name: "none", file: "ELF...program", err: fs.ErrNotExist},
		{name: "empty", file: "", err: fs.ErrNotExist},
		{name: "size beyond the file", file: "x" + trailer(99), err: errBad},
		{name: "size not hex", file: "xxxxxxxxxx" + helperMagic + "zzzzzzzzzzzzzzzz", err: errBad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "builder")
			must(t, os.WriteFile(p, []byte(tc.file), 0o755))
			f, err := os.Open(p)
			must(t, err)
			defer f.Close()
			r, err := appendedHelper(f)
			switch {
			case tc.err == nil && err == nil:
				b, err := io.ReadAll(r)
				must(t, err)
				if string(b) != tc.want {
					t.Errorf("helper %q, want %q", b, tc.want)
				}
			case tc.err == errBad && err != nil && !errors.Is(err, fs.ErrNotExist):
			case tc.err != nil && tc.err != errBad && errors.Is(err, tc.err):
			default:
				t.Errorf("err %v, want %v", err, tc.err)
			}
		})
	}
}

var errBad = errors.New("any error but fs.ErrNotExist")
