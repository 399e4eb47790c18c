package sandbox

// Emulation preflight: a RUN for another architecture works only when the
// kernel hands that architecture's binaries to an emulator (binfmt_misc,
// e.g. Debian's qemu-user-static), and inside the sandbox only when the
// handler has the F (fix-binary) flag: without it the kernel opens the
// interpreter at exec time, in the build's mount namespace, where it does
// not exist. Checked before anything runs, instead of a bare "exec format
// error" in the middle of a build.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/builder-dev/builder/platform"
)

// DefaultBinfmtDir is where the kernel shows binfmt_misc handlers.
const DefaultBinfmtDir = "/proc/sys/fs/binfmt_misc"

// elfMachine describes an architecture's ELF header: class (1: 32-bit, 2:
// 64-bit), byte order and e_machine.
type elfMachine struct {
	class   byte
	big     bool
	machine uint16
	qemu    string // the qemu-user name of the architecture (Debian's handler is qemu-NAME)
}

var elfMachines = map[string]elfMachine{
	"386":      {1, false, 3, "i386"},
	"amd64":    {2, false, 62, "x86_64"},
	"arm":      {1, false, 40, "arm"},
	"arm64":    {2, false, 183, "aarch64"},
	"ppc64":    {2, true, 21, "ppc64"},
	"ppc64le":  {2, false, 21, "ppc64le"},
	"s390x":    {2, true, 22, "s390x"},
	"riscv64":  {2, false, 243, "riscv64"},
	"mips":     {1, true, 8, "mips"},
	"mipsle":   {1, false, 8, "mipsel"},
	"mips64":   {2, true, 8, "mips64"},
	"mips64le": {2, false, 8, "mips64el"},
	"loong64":  {2, false, 258, "loongarch64"},
}

// ELFMachine is the e_machine of arch's executables (0 if unknown).
func ELFMachine(arch string) uint16 { return elfMachines[arch].machine }

// header is the first 20 bytes of an executable of m: e_ident, e_type
// (ET_EXEC), e_machine.
func (m elfMachine) header() []byte {
	h := make([]byte, 20)
	copy(h, "\x7fELF")
	h[4], h[5], h[6] = m.class, 1, 1
	if m.big {
		h[5] = 2
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if m.big {
		bo = binary.BigEndian
	}
	bo.PutUint16(h[16:], 2)
	bo.PutUint16(h[18:], m.machine)
	return h
}

// Native reports whether this machine runs p's binaries without an
// emulator.
func Native(p platform.Platform) bool {
	host := runtime.GOARCH
	switch {
	case p.Architecture == host:
		return true
	case host == "amd64" && p.Architecture == "386":
		return true
	case host == "arm64" && p.Architecture == "arm":
		return true // AArch32 where the CPU has it; an emulator is needed elsewhere
	}
	return false
}

// CheckEmulation returns nil when RUN steps for p can run here: natively,
// or through an enabled binfmt_misc handler with the F flag in dir
// ("" means DefaultBinfmtDir). Otherwise the error names p and the fix.
func CheckEmulation(dir string, p platform.Platform) error {
	if Native(p) {
		return nil
	}
	if dir == "" {
		dir = DefaultBinfmtDir
	}
	m, ok := elfMachines[p.Architecture]
	if !ok {
		return fmt.Errorf("RUN for %s: no emulator is known for architecture %s", p, p.Architecture)
	}
	fix := fmt.Sprintf("on Debian: apt-get install qemu-user-static binfmt-support, then as root "+
		"mount -t binfmt_misc binfmt_misc %s (if it is not mounted) and update-binfmts --enable qemu-%s", DefaultBinfmtDir, m.qemu)
	if _, err := os.Stat(filepath.Join(dir, "status")); err != nil {
		return &UnverifiableError{fmt.Errorf("RUN for %s needs an emulator, and binfmt_misc is not mounted at %s, so whether one is registered cannot be seen from here (a container does not see it; the kernel's handlers still serve it): if the RUN fails with \"exec format error\", %s", p, dir, fix)}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("RUN for %s: reading %s: %w", p, dir, err)
	}
	hdr := m.header()
	var noF, disabled string
	for _, e := range ents {
		if e.Name() == "status" || e.Name() == "register" || e.IsDir() {
			continue
		}
		h, err := readHandler(filepath.Join(dir, e.Name()))
		if err != nil || !h.matches(hdr) {
			continue
		}
		switch {
		case !h.enabled:
			disabled = e.Name()
		case !strings.Contains(h.flags, "F"):
			noF = e.Name()
		default:
			return nil
		}
	}
	switch {
	case noF != "":
		return fmt.Errorf("RUN for %s: the binfmt_misc handler %s has no F (fix-binary) flag, so its emulator "+
			"cannot be found inside the build's namespaces; register it with F (Debian's qemu-user-static does: "+
			"update-binfmts --disable qemu-%s && update-binfmts --enable qemu-%s)", p, noF, m.qemu, m.qemu)
	case disabled != "":
		return fmt.Errorf("RUN for %s: the binfmt_misc handler %s is disabled: as root, update-binfmts --enable qemu-%s", p, disabled, m.qemu)
	}
	return fmt.Errorf("RUN for %s needs an emulator: no binfmt_misc handler for %s is registered in %s; %s", p, p.Architecture, dir, fix)
}

// UnverifiableError is CheckEmulation's answer where binfmt_misc cannot be
// read (not mounted: the usual case in a container, whose RUN steps the
// node's handlers serve all the same): a warning, not a refusal.
type UnverifiableError struct{ Err error }

func (e *UnverifiableError) Error() string { return e.Err.Error() }
func (e *UnverifiableError) Unwrap() error { return e.Err }

// handler is one binfmt_misc entry.
type handler struct {
	enabled     bool
	flags       string
	offset      int
	magic, mask []byte
}

func readHandler(path string) (*handler, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	h := &handler{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		switch k {
		case "enabled":
			h.enabled = true
		case "flags:":
			h.flags = v
		case "offset":
			if h.offset, err = strconv.Atoi(v); err != nil {
				return nil, err
			}
		case "magic":
			if h.magic, err = hex.DecodeString(v); err != nil {
				return nil, err
			}
		case "mask":
			if h.mask, err = hex.DecodeString(v); err != nil {
				return nil, err
			}
		}
	}
	if len(h.magic) == 0 {
		return nil, errors.New("not a magic handler") // extension handlers do not serve ELF files
	}
	return h, nil
}

// matches reports whether the kernel would hand a file starting with hdr
// to h.
func (h *handler) matches(hdr []byte) bool {
	if h.offset < 0 || h.offset+len(h.magic) > len(hdr) {
		return false
	}
	for i, b := range h.magic {
		mask := byte(0xff)
		if i < len(h.mask) {
			mask = h.mask[i]
		}
		if hdr[h.offset+i]&mask != b&mask {
			return false
		}
	}
	return true
}

// Emulators lists the architectures (GOARCH names) that enabled
// binfmt_misc handlers in dir serve with the F flag, sorted.
func Emulators(dir string) []string {
	if dir == "" {
		dir = DefaultBinfmtDir
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for arch, m := range elfMachines {
		for _, e := range ents {
			if e.Name() == "status" || e.Name() == "register" {
				continue
			}
			h, err := readHandler(filepath.Join(dir, e.Name()))
			if err == nil && h.enabled && strings.Contains(h.flags, "F") && h.matches(m.header()) {
				out = append(out, arch)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}
