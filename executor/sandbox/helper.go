package sandbox

// The sandbox's own processes (a RUN's init, the probe, the private
// network's holder, the crun shim) re-execute a program that has this
// package's entry points. builder's binary is one: 44 MB, whose start costs
// ~8 ms of CPU, most of it initialising packages the sandbox never runs, on
// the critical path of every RUN. A program of this package alone
// (executor/sandbox/helper: 3 MB, ~1.5 ms) is another; make build appends
// it to builder's binary (ExeHelper), and the sandbox runs it from a sealed
// memfd, only when it was built from the same sources as itself (a stale
// helper would speak another protocol).

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"

	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"
)

//go:embed *.go
var sources embed.FS

// helperCheckName is the helper's entry point that only says it runs.
const helperCheckName = "builder-sandbox-helper-check"

// staleExit is the helper's exit status when its sources differ from the
// caller's.
const staleExit = 121

var helper struct {
	open func() (io.ReadCloser, error)
	once sync.Once
	file *os.File // the sealed memfd, nil when the helper is not used
	why  string   // why not, for HelperStatus
}

// UseHelper gives the package the helper program: open reads it, once, when
// the first sandbox process starts (ExeHelper: from this binary's file).
// Call it before that; the package checks the helper then, and runs this
// binary instead when it is missing (fs.ErrNotExist), stale or cannot run
// here.
func UseHelper(open func() (io.ReadCloser, error)) { helper.open = open }

// helperTrailer ends a binary that carries the helper after its own bytes
// (make build appends them): "BLDRHLP1" and the helper's size, 16 hex
// digits. Nothing maps those bytes, so reading them costs no memory (as an
// embedded copy would: its pages stayed resident, +3-6 MB of peak RSS).
const (
	helperMagic      = "BLDRHLP1"
	helperTrailerLen = len(helperMagic) + 16
)

// ExeHelper reads the helper appended to this process's executable;
// fs.ErrNotExist when there is none (a plain go build).
func ExeHelper() (io.ReadCloser, error) {
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return nil, err
	}
	r, err := appendedHelper(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{r, f}, nil
}

// appendedHelper is the helper appended to the file f.
func appendedHelper(f *os.File) (io.Reader, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	end := fi.Size() - int64(helperTrailerLen)
	if end < 0 {
		return nil, fs.ErrNotExist
	}
	t := make([]byte, helperTrailerLen)
	if _, err := f.ReadAt(t, end); err != nil {
		return nil, err
	}
	if string(t[:len(helperMagic)]) != helperMagic {
		return nil, fs.ErrNotExist
	}
	size, err := strconv.ParseInt(string(t[len(helperMagic):]), 16, 64)
	if err != nil || size <= 0 || size > end {
		return nil, fmt.Errorf("helper trailer: bad size %q", t[len(helperMagic):])
	}
	return io.NewSectionReader(f, end-size, size), nil
}

var helperSaid sync.Once

// sayHelper logs once, at debug level, what the RUNs' processes start from.
func (s *Sandbox) sayHelper() {
	helperSaid.Do(func() {
		if used, why := HelperStatus(); used {
			s.log().Debug("sandbox processes start from the helper program")
		} else {
			s.log().Debug("sandbox processes start from builder's binary", "why", why)
		}
	})
}

// HelperStatus says whether sandbox processes run the helper, and if not why.
func HelperStatus() (bool, string) {
	helperFile()
	return helper.file != nil, helper.why
}

var sourceHash = sync.OnceValue(func() string {
	h := sha256.New()
	var names []string
	fs.WalkDir(sources, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return nil
	})
	sort.Strings(names)
	for _, n := range names {
		b, _ := sources.ReadFile(n)
		fmt.Fprintf(h, "%s %d\n", n, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
})

// helperFile sets the helper up once: a sealed memfd holding it, kept if
// the helper runs and was built from these sources.
func helperFile() *os.File {
	helper.once.Do(func() {
		var r io.ReadCloser
		err := fs.ErrNotExist
		if helper.open != nil {
			r, err = helper.open()
		}
		if errors.Is(err, fs.ErrNotExist) {
			helper.why = "builder was built without it (make build appends it)"
			return
		}
		if err != nil {
			helper.why = err.Error()
			return
		}
		f, err := sealedMemfd("builder-sandbox-helper", r)
		r.Close()
		if err != nil {
			helper.why = err.Error()
			return
		}
		cmd := exec.Command("/proc/self/exe") // replaced by viaHelper
		cmd.Args = []string{helperCheckName}
		cmd.Env = []string{}
		viaHelper(cmd, f)
		err = cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == staleExit {
			err = fmt.Errorf("it was built from other sources than this binary (rebuild with make build)")
		}
		if err != nil {
			f.Close()
			helper.why = "the helper does not run: " + err.Error()
			return
		}
		helper.file = f
	})
	return helper.file
}

// sealedMemfd is an executable memfd holding r's bytes that nothing can
// change.
func sealedMemfd(name string, r io.Reader) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return nil, fmt.Errorf("memfd: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, fmt.Errorf("sealing memfd: %w", err)
	}
	return f, nil
}

// command is the re-execution of entry point name with args, as this
// binary; start starts it as the helper where there is one.
func command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(reexec.Self())
	cmd.Args = append([]string{name}, args...)
	return cmd
}

// start starts cmd (made by command, its ExtraFiles set): as the helper
// when there is one, else as this binary.
func start(cmd *exec.Cmd) error {
	if f := helperFile(); f != nil {
		viaHelper(cmd, f)
	}
	return cmd.Start()
}

// viaHelper makes cmd run the helper in f: handed over as the last extra
// file, whose number in the child is known (a number of this process could
// be taken by the child's own ExtraFiles before its execve), with the
// sources' hash and that number as its first argument.
func viaHelper(cmd *exec.Cmd, f *os.File) {
	fd := 3 + len(cmd.ExtraFiles)
	cmd.ExtraFiles = append(cmd.ExtraFiles, f)
	cmd.Path = fmt.Sprintf("/proc/self/fd/%d", fd)
	cmd.Args = append([]string{cmd.Args[0], sourceHash() + ":" + strconv.Itoa(fd)}, cmd.Args[1:]...)
}

// HelperMain is the helper program's main: it runs the entry point its
// argv[0] names, if its sources are the caller's.
func HelperMain() {
	if len(os.Args) < 2 {
		os.Exit(staleExit)
	}
	hash, fd, _ := strings.Cut(os.Args[1], ":")
	if hash != sourceHash() {
		os.Exit(staleExit)
	}
	// Its own program, handed over as an extra file, is no RUN's business.
	if n, err := strconv.Atoi(fd); err == nil {
		unix.CloseOnExec(n)
	}
	os.Args = append(os.Args[:1:1], os.Args[2:]...)
	if os.Args[0] == helperCheckName {
		os.Exit(0)
	}
	if !reexec.Init() {
		fmt.Fprintf(os.Stderr, "builder sandbox helper: unknown entry point %q\n", os.Args[0])
		os.Exit(2)
	}
	os.Exit(0)
}
