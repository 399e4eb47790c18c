package image

import (
	"fmt"
	"strings"

	"github.com/builder-dev/builder/platform"
	"go.podman.io/image/v5/manifest"
)

// Mismatch is what Resolve does with an image of another platform than
// the one asked for.
type Mismatch int

const (
	MismatchError Mismatch = iota // refuse it (the default)
	MismatchWarn                  // use it, with a warning (--platform-mismatch=warn)
)

// ParseMismatch reads a --platform-mismatch value.
func ParseMismatch(s string) (Mismatch, error) {
	switch s {
	case "", "error":
		return MismatchError, nil
	case "warn":
		return MismatchWarn, nil
	}
	return 0, fmt.Errorf("unknown platform mismatch policy %q (want error or warn)", s)
}

// PlatformError says that an image has nothing for the platform a build
// asked for, and what it has.
type PlatformError struct {
	Image string // as the build named it
	Want  platform.Platform
	Have  []platform.Platform
	List  bool // Have are the instances of an index; else the image's own platform
}

func (e *PlatformError) Error() string {
	name := e.Image
	if name == "" {
		name = "the image"
	}
	have := make([]string, len(e.Have))
	for i, p := range e.Have {
		have[i] = p.String()
	}
	if !e.List {
		return fmt.Sprintf("%s is for %s, not %s (--platform-mismatch=warn uses it anyway)", name, strings.Join(have, ", "), e.Want)
	}
	if len(have) == 0 {
		return fmt.Sprintf("%s has no image for %s: its index names no platform", name, e.Want)
	}
	return fmt.Sprintf("%s has no image for %s; its index has %s", name, e.Want, strings.Join(have, ", "))
}

// listPlatforms are the platforms an index names.
func listPlatforms(l manifest.List) []platform.Platform {
	var out []platform.Platform
	for _, d := range l.Instances() {
		inst, err := l.Instance(d)
		if err != nil || inst.ReadOnly.Platform == nil {
			continue
		}
		out = append(out, platform.FromOCI(*inst.ReadOnly.Platform))
	}
	return out
}
