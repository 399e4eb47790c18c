// Package platform is the one place where platforms are parsed, validated,
// normalised and printed: the --platform flags, FROM --platform, the
// automatic TARGET*/BUILD* args, image resolution and cache keys all use
// its Platform type, so "linux/aarch64", "linux/arm64/v8" and
// "linux/arm64" are one platform everywhere.
package platform

import (
	"fmt"
	"runtime"
	"slices"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Platform is an OS, an architecture and an optional variant, always in
// normal form when it comes from this package. Its JSON is that of the OCI
// image-spec's platform object (the same bytes as ocispec.Platform).
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
}

// String is "os/arch[/variant]", the form of TARGETPLATFORM and --platform.
func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// IsZero reports an unset platform.
func (p Platform) IsZero() bool { return p.OS == "" && p.Architecture == "" }

// OCI is p as the image-spec type, for configs, descriptors and
// containers/image.
func (p Platform) OCI() ocispec.Platform {
	return ocispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
}

// FromOCI takes an image-spec platform (an image config, an index entry)
// into normal form; it does not validate.
func FromOCI(o ocispec.Platform) Platform {
	return Normalize(Platform{OS: o.OS, Architecture: o.Architecture, Variant: o.Variant})
}

// Matches reports whether an image for have runs where want is asked for:
// same OS and architecture, and the same variant when both name one.
func (want Platform) Matches(have Platform) bool {
	want, have = Normalize(want), Normalize(have)
	if want.OS != have.OS || want.Architecture != have.Architecture {
		return false
	}
	return want.Variant == "" || have.Variant == "" || want.Variant == have.Variant
}

// Host is the platform this binary runs on (what a build targets when no
// --platform is given).
func Host() Platform {
	return Normalize(Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH})
}

// Parse reads "os/arch[/variant]" and validates each part against the
// names Go and the OCI image-spec know, with the usual aliases (aarch64,
// x86_64, armhf, armel, i386, arm64/v8, macos).
func Parse(s string) (Platform, error) {
	parts := strings.Split(strings.ToLower(strings.TrimSpace(s)), "/")
	if len(parts) < 2 || len(parts) > 3 || slices.Contains(parts, "") {
		return Platform{}, fmt.Errorf("invalid platform %q: want os/arch[/variant]", s)
	}
	p := Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	p = Normalize(p)
	if err := p.validate(); err != nil {
		return Platform{}, fmt.Errorf("invalid platform %q: %w", s, err)
	}
	return p, nil
}

// ParseList reads --platform values: each may be a comma-separated list,
// and the flag may be repeated. Duplicates (after normalising) are
// dropped; the order of first appearance is kept.
func ParseList(values []string) ([]Platform, error) {
	var out []Platform
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			if strings.TrimSpace(s) == "" {
				return nil, fmt.Errorf("invalid platform list %q: empty entry", v)
			}
			p, err := Parse(s)
			if err != nil {
				return nil, err
			}
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// Normalize applies containerd's aliases: lower case, x86_64 → amd64,
// aarch64 → arm64 (variant v8 is the default and dropped), armhf → arm/v7,
// armel → arm/v6, bare arm → arm/v7, i386 → 386, amd64/v1 → amd64,
// macos → darwin.
func Normalize(p Platform) Platform {
	p.OS = strings.ToLower(p.OS)
	if p.OS == "macos" {
		p.OS = "darwin"
	}
	arch, variant := strings.ToLower(p.Architecture), strings.ToLower(p.Variant)
	switch arch {
	case "i386":
		arch, variant = "386", ""
	case "x86_64", "x86-64", "amd64":
		arch = "amd64"
		if variant == "v1" {
			variant = ""
		}
	case "aarch64", "arm64":
		arch = "arm64"
		switch variant {
		case "8", "v8", "v8.0":
			variant = ""
		}
	case "armhf":
		arch, variant = "arm", "v7"
	case "armel":
		arch, variant = "arm", "v6"
	case "arm", "armv7l":
		arch = "arm"
		switch variant {
		case "", "7":
			variant = "v7"
		case "5", "6", "8":
			variant = "v" + variant
		}
	}
	p.Architecture, p.Variant = arch, variant
	return p
}

// knownOS are Go's GOOS values (the image-spec says os values are GOOS).
var knownOS = []string{
	"aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js",
	"linux", "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows", "zos",
}

// knownVariants are the variants each architecture may carry ("" is
// always allowed). arm and arm64 as the image-spec lists them (arm64's v8
// minor versions and v9 as containerd accepts them), amd64's
// microarchitecture levels, riscv64's profiles.
var knownVariants = map[string][]string{
	"arm": {"v5", "v6", "v7", "v8"},
	"arm64": {"v8.1", "v8.2", "v8.3", "v8.4", "v8.5", "v8.6", "v8.7", "v8.8", "v8.9",
		"v9", "v9.0", "v9.1", "v9.2", "v9.3", "v9.4", "v9.5"},
	"amd64":   {"v2", "v3", "v4"},
	"riscv64": {"rva20u64", "rva22u64", "rva23u64"},
}

// knownArch are Go's GOARCH values.
var knownArch = []string{
	"386", "amd64", "arm", "arm64", "loong64", "mips", "mipsle", "mips64", "mips64le",
	"ppc64", "ppc64le", "riscv64", "s390x", "wasm",
}

func (p Platform) validate() error {
	if !slices.Contains(knownOS, p.OS) {
		return fmt.Errorf("unknown operating system %q (e.g. linux, windows)", p.OS)
	}
	if !slices.Contains(knownArch, p.Architecture) {
		return fmt.Errorf("unknown architecture %q (e.g. amd64, arm64, arm, 386, ppc64le, s390x, riscv64)", p.Architecture)
	}
	if p.Variant != "" && !slices.Contains(knownVariants[p.Architecture], p.Variant) {
		if len(knownVariants[p.Architecture]) == 0 {
			return fmt.Errorf("architecture %s has no variants (got %q)", p.Architecture, p.Variant)
		}
		return fmt.Errorf("unknown variant %q of %s (want one of %s)", p.Variant, p.Architecture,
			strings.Join(knownVariants[p.Architecture], ", "))
	}
	return nil
}
