package dockerfile

import (
	"fmt"
	"runtime"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// parsePlatform reads "os/arch[/variant]" as written in FROM --platform.
// We cannot import containerd/platforms here, so this is a deliberately
// small subset: both os and arch are required.
func parsePlatform(s string) (ocispec.Platform, error) {
	parts := strings.Split(strings.ToLower(strings.TrimSpace(s)), "/")
	if len(parts) < 2 || len(parts) > 3 {
		return ocispec.Platform{}, fmt.Errorf("invalid platform %q: want os/arch[/variant]", s)
	}
	for _, p := range parts {
		if p == "" {
			return ocispec.Platform{}, fmt.Errorf("invalid platform %q: want os/arch[/variant]", s)
		}
	}
	p := ocispec.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return normalizePlatform(p), nil
}

// normalizePlatform applies containerd's usual aliases so that
// "linux/aarch64" and "linux/arm64/v8" name the same platform.
func normalizePlatform(p ocispec.Platform) ocispec.Platform {
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

// formatPlatform is "os/arch[/variant]", the value of TARGETPLATFORM.
func formatPlatform(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// defaultPlatform is used when the caller leaves a platform zero: linux on
// the architecture this binary runs on (what BuildKit's DefaultSpec does).
func defaultPlatform() ocispec.Platform {
	return normalizePlatform(ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH})
}

// platformArgs are BuildKit's automatic args, defined in the global scope
// (usable in FROM) and visible in a stage only after `ARG NAME`.
func platformArgs(target, build ocispec.Platform, targetStage string) [][2]string {
	return [][2]string{
		{"BUILDPLATFORM", formatPlatform(build)},
		{"BUILDOS", build.OS},
		{"BUILDARCH", build.Architecture},
		{"BUILDVARIANT", build.Variant},
		{"TARGETPLATFORM", formatPlatform(target)},
		{"TARGETOS", target.OS},
		{"TARGETARCH", target.Architecture},
		{"TARGETVARIANT", target.Variant},
		{"TARGETSTAGE", targetStage},
	}
}

// builtinArgs may be passed with --build-arg without a matching ARG and are
// therefore never reported as unused. The proxy variables are Docker's
// predefined args; they reach RUN through Exec.Proxy.
var builtinArgs = map[string]bool{
	"HTTP_PROXY":        true,
	"http_proxy":        true,
	"HTTPS_PROXY":       true,
	"https_proxy":       true,
	"FTP_PROXY":         true,
	"ftp_proxy":         true,
	"NO_PROXY":          true,
	"no_proxy":          true,
	"ALL_PROXY":         true,
	"all_proxy":         true,
	"SOURCE_DATE_EPOCH": true,
	"BUILDPLATFORM":     true,
	"BUILDOS":           true,
	"BUILDARCH":         true,
	"BUILDVARIANT":      true,
	"TARGETPLATFORM":    true,
	"TARGETOS":          true,
	"TARGETARCH":        true,
	"TARGETVARIANT":     true,
	"TARGETSTAGE":       true,
}

// isProxyArg reports the predefined proxy args (case as Docker accepts them).
func isProxyArg(k string) bool {
	switch strings.ToLower(k) {
	case "http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "all_proxy":
		return builtinArgs[k]
	}
	return false
}
