// Package build is the library entry for building images: Run takes a
// Dockerfile, a context and Options and does the whole build — store,
// bases, layer cache, isolation and snapshots, the executor, the outputs
// and the push — as buildah's imagebuildah does for podman. The command
// line turns flags into Options and prints the Result; anything else that
// wants to build an image calls Run the same way.
package build

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/builder-dev/builder/executor"
	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/images"
	"github.com/builder-dev/builder/platform"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
)

// Options describe one build. The zero value of each field is the default
// of the `bud` flag of the same name.
type Options struct {
	// Store is the local store (required): bases are resolved and pulled
	// through it, the layer cache and snapshots live beside it, and the
	// image is committed to it when it is tagged or has no other output.
	Store *images.Store

	ContextDir string // build context (default ".")
	// Dockerfile is the Dockerfile's path; "" looks for Dockerfile, then
	// Containerfile, in ContextDir; "-" reads Stdin.
	Dockerfile string
	Stdin      io.Reader
	Target     string            // build up to this stage
	BuildArgs  map[string]string // --build-arg (see ReadBuildArgs)
	// Platforms to build for; none means this machine's. With several, the
	// build makes one image per platform and an index naming them.
	Platforms []platform.Platform
	// AllPlatforms builds every platform all the build's base images have
	// (--all-platforms); Platforms must be empty.
	AllPlatforms bool
	// Jobs bounds the platforms built at once, and the independent stages
	// of each that run at once (0: the number of CPUs; 1: one stage at a
	// time, in Dockerfile order).
	Jobs int
	// Manifest names a manifest list in the local store that the build's
	// images are added to (--manifest; created if missing, an image of the
	// same platform replaced).
	Manifest string
	// PlatformMismatch is "warn" to use a base image of another platform
	// than asked for (with a warning) instead of failing; "" or "error"
	// fails. A build without --platform always only warns, as docker's.
	PlatformMismatch string
	// BinfmtDir is where binfmt_misc handlers are read by the emulation
	// preflight ("" is /proc/sys/fs/binfmt_misc).
	BinfmtDir string
	Format    string // manifest format: "oci" (default) or "docker"
	// Timestamp, when set, is every created time and the mtime ceiling of
	// every layer entry (reproducible builds; see SourceDateEpoch).
	Timestamp *time.Time
	// Labels are set on the final image's config (--label), over the
	// Dockerfile's; UnsetLabels removed from it (--unsetlabel), also those
	// the base brought.
	Labels      map[string]string
	UnsetLabels []string
	// Env (KEY=VALUE) is set in the final image's config (--env); UnsetEnv
	// names removed from it (--unsetenv).
	Env      []string
	UnsetEnv []string
	// Annotations go into the final image's OCI manifest (--annotation).
	Annotations map[string]string
	Tags        []string // names in the local store (the first is the commit's)
	Outputs     []Output // other destinations (see ParseOutput)
	IIDFile     string   // write the image ID here

	// The layer cache.
	NoLayers      bool          // neither use nor fill it (--layers=false)
	NoCache       bool          // do not use it, still fill it
	CacheTTL      time.Duration // ignore older entries (0: no limit)
	PortableModes bool          // git's modes for context files
	ExplainCache  bool          // say why each miss missed
	CacheFrom     []string      // repositories to look in after a local miss
	CacheTo       string        // repository to export entries to (see ParseCacheTo)
	// CacheToMin exports only the target stage's entries (mode=min).
	CacheToMin bool
	// CacheToMounts also exports the RUN cache mounts the build used
	// (--cache-to REF,mounts=true): their contents may be private.
	CacheToMounts bool

	// Registries.
	Pull        string // pull policy for bases: missing (default), always, never, newer
	Registry    images.RegistryOptions
	Push        bool   // push to every tag that names a registry
	DigestFile  string // with Push: write the pushed manifest's digest here
	Compression images.Compression

	// RUN.
	// Network of RUN steps: "private" (the default: a namespace of their
	// own with user-mode networking, host loopback out of reach), "host"
	// (the user's explicit opt-in) or "none".
	Network string
	// Allow are the user's entitlements: "network.host" lets a
	// Dockerfile's RUN --network=host run, "security.insecure" its RUN
	// --security=insecure (with every privilege of the sandbox).
	Allow       []string
	Isolation   string            // "" detects; rootless, chroot or oci
	Runtime     string            // hand RUN to this OCI runtime
	Secrets     map[string]Secret // by id (see ParseSecret)
	Snapshotter string            // "" picks; overlay, fuse-overlayfs, copy
	// What every RUN gets, as buildah's and docker's flags: AddHosts
	// ("name:ip" in /etc/hosts), NoHosts (the image's /etc/hosts left
	// alone), Volumes ("HOST:DEST[:ro]" bind mounts, never in a layer),
	// Ulimits ("nofile=1024[:2048]"), ShmSize ("128m"), CapAdd and CapDrop
	// (capability names; "ALL" drops every one).
	AddHosts        []string
	NoHosts         bool
	Volumes         []string
	Ulimits         []string
	ShmSize         string
	CapAdd, CapDrop []string
	// Squash merges the layers the build adds above the final stage's base
	// image into one (--squash, as buildah's).
	Squash bool
	// BuildContexts are --build-context NAME=VALUE: a directory, or an
	// image (docker-image://REF, oci-layout://DIR[:TAG], or any transport
	// reference such as oci:DIR or docker://REF), read by FROM NAME, COPY
	// --from=NAME and RUN --mount from=NAME.
	BuildContexts []string
	// SSH are --ssh values: "default" (the agent of $SSH_AUTH_SOCK) or
	// "ID=SOCKET", for RUN --mount=type=ssh.
	SSH []string

	// Progress is the view of Out: "auto" (default: tty on a terminal,
	// else plain), "plain", "tty" (a live view) or "json" (one event per
	// line).
	Progress string
	// Stdout receives an --output whose dest is "-" (a tar); nil refuses
	// such an output.
	Stdout io.Writer
	// Out receives progress (STEP lines, RUN output); nil discards it.
	Out io.Writer
	// ErrOut receives warnings, and the last lines of a failing RUN when
	// Out discards output; nil discards them.
	ErrOut io.Writer
	Log    *slog.Logger
}

// Secret is one --secret: a file or an environment variable, read when a
// RUN mounts it.
type Secret = executor.Secret

// Output is one --output destination.
type Output struct {
	Type string // local, tar (the root file system), oci, docker-archive, image
	Dest string // a directory or file; "-" is stdout (tar)
	Name string // image: the name to give it (a -t)
	Push bool   // image: push it
}

// Result is what a build made.
type Result struct {
	// ImageID is the image's ID: its config digest. For a multi-platform
	// build, the digest of the index naming the images.
	ImageID digest.Digest
	// Tags are the names the image (or the manifest list) got in the local
	// store.
	Tags []string
	// Pushed is the digest of the manifest (or index) pushed with Push (""
	// without).
	Pushed digest.Digest
	// Images are the per-platform images of a multi-platform build (or of
	// a build with Manifest), in the order of Options.Platforms.
	Images []PlatformImage
	// ListID is the ID of the manifest list the build named or added to in
	// the local store ("" when none).
	ListID string
}

// PlatformImage is one platform's image of a build.
type PlatformImage struct {
	Platform platform.Platform
	ImageID  digest.Digest
}

// Failure wraps the error of a build that failed for a reason in its
// input — the Dockerfile or a step — rather than in builder or the
// machine: the command line exits 1 for it.
type Failure struct{ Err error }

func (e *Failure) Error() string { return e.Err.Error() }
func (e *Failure) Unwrap() error { return e.Err }

// OptionError is an error in the options themselves (exit 2).
type OptionError = images.OptionError

var optionf = images.Optionf

// ParseOutput parses --output as buildah and buildx take it: a bare DIR
// (local), "-" (the root file system as a tar on stdout), or keys
// type=local|tar|oci|docker|docker-archive|image|registry, dest=PATH
// (type=oci with dest=F.tar writes an OCI archive; "-" is stdout for tar),
// name=NAME and push=true|false (image, registry).
func ParseOutput(s string) (Output, error) {
	var o Output
	switch {
	case s == "-":
		return Output{Type: "tar", Dest: "-"}, nil
	case !strings.Contains(s, "="):
		return Output{Type: "local", Dest: s}, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch strings.TrimSpace(k) {
		case "type":
			o.Type = v
		case "dest":
			o.Dest = v
		case "name":
			o.Name = v
		case "push":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return o, optionf("--output %q: push=%q: want true or false", s, v)
			}
			o.Push = b
		default:
			return o, optionf("--output %q: unknown key %q", s, k)
		}
	}
	switch o.Type {
	case "docker":
		o.Type = "docker-archive"
	case "registry":
		o.Type, o.Push = "image", true
	}
	switch o.Type {
	case "oci", "docker-archive", "local", "tar":
		if o.Dest == "" {
			return o, optionf("--output %q: dest= is required", s)
		}
		if o.Dest == "-" && o.Type != "tar" {
			return o, optionf("--output %q: only type=tar writes to stdout", s)
		}
	case "image":
		if o.Name == "" {
			return o, optionf("--output %q: name= is required", s)
		}
	default:
		return o, optionf("--output %q: unknown type %q (want local, tar, oci, docker, image or registry)", s, o.Type)
	}
	return o, nil
}

// ParseCacheTo parses --cache-to: REF (a registry repository, or oci:DIR),
// buildx's keys type=registry,ref=REF | type=local,dest=DIR with
// mode=min|max, and builder's mounts=true|false (export RUN cache mounts
// too; off by default). mode=min exports only the target stage's steps.
func ParseCacheTo(s string) (ref string, mounts, minMode bool, err error) {
	kv, err := cacheKeys(s, "--cache-to", "dest")
	if err != nil {
		return "", false, false, err
	}
	if v, ok := kv["mounts"]; ok {
		if mounts, err = strconv.ParseBool(v); err != nil {
			return "", false, false, optionf("--cache-to %q: mounts=%q: want true or false", s, v)
		}
	}
	switch kv["mode"] {
	case "", "max":
	case "min":
		minMode = true
	default:
		return "", false, false, optionf("--cache-to %q: mode=%q: want min or max", s, kv["mode"])
	}
	return kv["ref"], mounts, minMode, nil
}

// ParseCacheFrom parses one --cache-from: REF, or type=registry,ref=REF |
// type=local,src=DIR.
func ParseCacheFrom(s string) (string, error) {
	kv, err := cacheKeys(s, "--cache-from", "src")
	if err != nil {
		return "", err
	}
	return kv["ref"], nil
}

// cacheKeys reads a cache flag's value into keys, the repository (or
// oci:DIR for type=local) under "ref".
func cacheKeys(s, flag, dirKey string) (map[string]string, error) {
	kv := map[string]string{}
	for i, part := range strings.Split(s, ",") {
		k, v, hasEq := strings.Cut(part, "=")
		if !hasEq && i == 0 {
			kv["ref"] = part
			continue
		}
		switch k {
		case "type", "ref", "mode", "mounts", "dest", "src":
			kv[k] = v
		case "compression", "compression-level", "force-compression", "oci-mediatypes", "image-manifest", "ignore-error", "name":
			// buildx's export tuning: builder's cache is always an OCI image index.
		default:
			return nil, optionf("%s %q: unknown key %q", flag, s, k)
		}
	}
	switch kv["type"] {
	case "", "registry":
	case "local":
		dir := kv[dirKey]
		if dir == "" {
			return nil, optionf("%s %q: type=local needs %s=DIR", flag, s, dirKey)
		}
		kv["ref"] = "oci:" + dir
	default:
		return nil, optionf("%s %q: unknown type %q (want registry or local)", flag, s, kv["type"])
	}
	if kv["ref"] == "" {
		return nil, optionf("%s %q: no repository (want REF, or type=registry,ref=REF, or type=local,%s=DIR)", flag, s, dirKey)
	}
	return kv, nil
}

// ParseSecret parses --secret id=ID,src=FILE | id=ID,env=VAR (type=file|env
// allowed); a bare id=ID reads the environment variable ID.
func ParseSecret(s string) (string, Secret, error) {
	var id, typ string
	var sec Secret
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "id":
			id = v
		case "src", "source":
			sec.File = v
		case "env":
			sec.Env = v
		case "type":
			if v != "file" && v != "env" {
				return "", sec, optionf("--secret %q: unknown type %q", s, v)
			}
			typ = v
		default:
			return "", sec, optionf("--secret %q: unknown key %q", s, k)
		}
	}
	if typ == "env" && sec.File != "" {
		// type=env,src=VAR names a variable, as in buildah and BuildKit.
		sec.Env, sec.File = sec.File, ""
	}
	if sec.File == "" && sec.Env == "" {
		sec.Env = id
		if _, ok := os.LookupEnv(id); !ok {
			return "", sec, optionf("--secret %q: give src=FILE or env=VAR", s)
		}
	}
	if id == "" {
		if sec.File != "" {
			id = filepath.Base(sec.File)
		} else {
			id = sec.Env
		}
	}
	if sec.File != "" {
		if _, err := os.Stat(sec.File); err != nil {
			return "", sec, optionf("--secret %q: %w", s, err)
		}
	}
	return id, sec, nil
}

// ReadBuildArgs collects --build-arg-file files, then --build-arg values
// (KEY=VALUE, or KEY to take it from the environment when set).
func ReadBuildArgs(files, args []string) (map[string]string, error) {
	out := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, optionf("--build-arg-file: %w", err)
		}
		sc := bufio.NewScanner(strings.NewReader(string(data)))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				if ev, set := os.LookupEnv(line); set {
					out[line] = ev
				}
				continue
			}
			if k == "" {
				return nil, optionf("--build-arg-file %s:%d: empty key", f, n)
			}
			out[k] = v
		}
	}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if k == "" {
			return nil, optionf("--build-arg %q: empty key", a)
		}
		if !ok {
			ev, set := os.LookupEnv(k)
			if !set {
				continue
			}
			v = ev
		}
		out[k] = v
	}
	return out, nil
}

// SourceDateEpoch is $SOURCE_DATE_EPOCH as a timestamp (nil when unset),
// the reproducible-builds convention for Options.Timestamp.
func SourceDateEpoch() (*time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return nil, optionf("SOURCE_DATE_EPOCH=%q: not a number of seconds", v)
	}
	t := time.Unix(n, 0).UTC()
	return &t, nil
}

// IsFailure reports whether err is a build failure (exit 1).
func IsFailure(err error) bool {
	var f *Failure
	return errors.As(err, &f)
}

func (o *Options) defaults() {
	// buildx's type=image/registry outputs are names (and a push).
	outs := o.Outputs[:0:0]
	for _, out := range o.Outputs {
		if out.Type == "image" {
			o.Tags = append(o.Tags, out.Name)
			o.Push = o.Push || out.Push
			continue
		}
		outs = append(outs, out)
	}
	o.Outputs = outs
	if o.ContextDir == "" {
		o.ContextDir = "."
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.ErrOut == nil {
		o.ErrOut = io.Discard
	}
	if o.Log == nil && o.Store != nil {
		o.Log = o.Store.Log()
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Network == "" || o.Network == "default" {
		o.Network = "private"
	}
}

// multi reports whether the build makes an image per platform and an
// index (more than one platform asked for, or all of the bases').
func (o *Options) multi() bool { return len(o.Platforms) > 1 || o.AllPlatforms }

func (o *Options) validate() error {
	switch o.Network {
	case "private", "host", "none":
	default:
		return optionf("--network %q: want private (the default), host or none", o.Network)
	}
	for _, a := range o.Allow {
		if a != "network.host" && a != "security.insecure" {
			return optionf("--allow %q: want network.host or security.insecure", a)
		}
	}
	if o.CacheToMounts && o.CacheTo == "" {
		return optionf("exporting cache mounts needs --cache-to")
	}
	if (len(o.CacheFrom) > 0 || o.CacheTo != "") && o.NoLayers {
		return optionf("--cache-from and --cache-to need the layer cache (not --layers=false)")
	}
	// Names are checked before anything is built, not at the commit.
	for _, t := range o.Tags {
		if _, err := reference.ParseNormalizedNamed(t); err != nil {
			return optionf("-t %q: %v", t, err)
		}
	}
	if o.Manifest != "" {
		if _, err := reference.ParseNormalizedNamed(o.Manifest); err != nil {
			return optionf("--manifest %q: %v", o.Manifest, err)
		}
	}
	if _, err := ParseBuildContexts(o.BuildContexts); err != nil {
		return err
	}
	if o.AllPlatforms && len(o.Platforms) > 0 {
		return optionf("--all-platforms and --platform exclude each other")
	}
	switch o.Progress {
	case "", "auto", "plain", "tty", "json":
	default:
		return optionf("--progress %q: want auto, plain, tty or json", o.Progress)
	}
	if o.Jobs < 0 {
		return optionf("--jobs must not be negative")
	}
	if _, err := image.ParseMismatch(o.PlatformMismatch); err != nil {
		return optionf("--platform-mismatch: %w", err)
	}
	for _, out := range o.Outputs {
		if out.Type != "image" {
			if _, err := ParseOutput("type=" + out.Type + ",dest=" + out.Dest); err != nil {
				return err
			}
		}
		if out.Dest == "-" && o.Stdout == nil {
			return optionf("--output %s,dest=-: no standard output to write to", out.Type)
		}
		if o.multi() && out.Type == "tar" {
			return optionf("--output type=tar holds one root file system, and this build makes one per platform: use type=local (a directory per platform) or type=oci")
		}
		if o.multi() && (out.Type == "docker-archive" || out.Type == "tar") {
			return optionf("--output type=%s holds one image, and this build makes one per platform: use type=oci (an OCI layout holds the index)", out.Type)
		}
	}
	if fi, err := os.Stat(o.ContextDir); err != nil || !fi.IsDir() {
		return optionf("build context %q is not a directory", o.ContextDir)
	}
	if !o.Push && o.DigestFile != "" {
		return optionf("--digestfile needs --push")
	}
	return nil
}

// ParseBuildContexts reads --build-context NAME=VALUE values.
func ParseBuildContexts(values []string) (map[string]executor.NamedContext, error) {
	out := map[string]executor.NamedContext{}
	for _, v := range values {
		name, val, ok := strings.Cut(v, "=")
		if !ok || name == "" || val == "" {
			return nil, optionf("--build-context %q: want NAME=DIR or NAME=docker-image://REF", v)
		}
		var nc executor.NamedContext
		switch {
		case strings.HasPrefix(val, "docker-image://"):
			nc.Image = strings.TrimPrefix(val, "docker-image://")
		case strings.HasPrefix(val, "container-image://"):
			nc.Image = strings.TrimPrefix(val, "container-image://")
		case strings.HasPrefix(val, "oci-layout://"):
			nc.Image = "oci:" + strings.TrimPrefix(val, "oci-layout://")
		case strings.HasPrefix(val, "http://") || strings.HasPrefix(val, "https://") || strings.HasPrefix(val, "git@"):
			return nil, optionf("--build-context %s: remote contexts are not supported; fetch it and give the directory", v)
		default:
			if t, _, ok := strings.Cut(val, ":"); ok && images.IsTransport(t) {
				nc.Image = val
				break
			}
			fi, err := os.Stat(val)
			if err != nil || !fi.IsDir() {
				return nil, optionf("--build-context %s: %q is neither a directory nor an image reference (docker-image://REF)", v, val)
			}
			if nc.Dir, err = filepath.Abs(val); err != nil {
				return nil, optionf("--build-context %s: %v", v, err)
			}
		}
		out[name] = nc
	}
	return out, nil
}
