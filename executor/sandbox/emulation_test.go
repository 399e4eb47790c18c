package sandbox

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/builder-dev/builder/platform"
)

// Debian's qemu-user-static entry for aarch64, as /proc shows it.
const aarch64Entry = `enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: PF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
`

func TestCheckEmulation(t *testing.T) {
	if runtime.GOARCH == "arm64" {
		t.Fatal("these cases take an arm64 target as foreign; run them on another architecture")
	}
	arm64 := platform.Platform{OS: "linux", Architecture: "arm64"}
	cases := []struct {
		name    string
		files   map[string]string // nil: no binfmt_misc at all
		want    string            // "" = no error; else a substring of the error
		wantFix bool
	}{
		{"registered with F", map[string]string{"status": "enabled\n", "qemu-aarch64": aarch64Entry}, "", false},
		{"registered under another name", map[string]string{"status": "enabled\n", "arm64-emu": aarch64Entry}, "", false},
		{"no F flag", map[string]string{"status": "enabled\n", "qemu-aarch64": strings.Replace(aarch64Entry, "flags: PF", "flags: P", 1)}, "no F (fix-binary) flag", false},
		{"disabled", map[string]string{"status": "enabled\n", "qemu-aarch64": strings.Replace(aarch64Entry, "enabled\n", "disabled\n", 1)}, "is disabled", false},
		{"only another architecture", map[string]string{"status": "enabled\n", "qemu-arm": strings.Replace(aarch64Entry, "0200b700", "02002800", 1)}, "no binfmt_misc handler for arm64", true},
		{"extension handler", map[string]string{"status": "enabled\n", "jar": "enabled\ninterpreter /usr/bin/jexec\nflags: \nextension .jar\n"}, "no binfmt_misc handler", true},
		{"not mounted", map[string]string{}, "binfmt_misc is not mounted", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, data := range c.files {
				if err := os.WriteFile(filepath.Join(dir, n), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := CheckEmulation(dir, arm64)
			if c.want == "" {
				if err != nil {
					t.Fatalf("want no error, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "linux/arm64") {
				t.Fatalf("want an error naming linux/arm64 and %q, got %v", c.want, err)
			}
			if c.wantFix && !strings.Contains(err.Error(), "qemu-user-static") {
				t.Fatalf("the error does not say how to fix it: %v", err)
			}
		})
	}
	// This machine's own architecture never needs an emulator.
	if err := CheckEmulation(t.TempDir(), platform.Host()); err != nil {
		t.Fatalf("host platform: %v", err)
	}
}

func TestELFHeaderMatchesRealBinary(t *testing.T) {
	// The header we test handlers against is the one a real executable of
	// this machine starts with (e_type aside: PIE binaries are ET_DYN).
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	h := elfMachines[runtime.GOARCH].header()
	if string(data[:7]) != string(h[:7]) || string(data[18:20]) != string(h[18:20]) {
		t.Fatalf("header %x, executable starts %x", h, data[:20])
	}
}
