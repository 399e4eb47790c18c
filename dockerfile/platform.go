package dockerfile

import (
	"strings"

	"github.com/builder-dev/builder/platform"
)

// platformArgs are BuildKit's automatic args, defined in the global scope
// (usable in FROM) and visible in a stage only after `ARG NAME`.
func platformArgs(target, build platform.Platform, targetStage string) [][2]string {
	return [][2]string{
		{"BUILDPLATFORM", build.String()},
		{"BUILDOS", build.OS},
		{"BUILDARCH", build.Architecture},
		{"BUILDVARIANT", build.Variant},
		{"TARGETPLATFORM", target.String()},
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
