package dockerfile

import (
	"fmt"

	"github.com/builder-dev/builder/platform"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
)

// Pos is a position in a Dockerfile. Positions never enter cache keys.
type Pos struct {
	File string // display name, e.g. "Dockerfile"
	Line int    // 1-based
}

func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}

// Error carries the Dockerfile position of a failure; errors.As finds it.
// Its text is "Dockerfile:LINE: message".
type Error struct {
	Pos Pos
	Err error
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// BaseConfig is the live input lowering needs: Docker's superset of the OCI
// config (Healthcheck, OnBuild and Shell live in the extension fields).
type BaseConfig = dockerspec.DockerOCIImageConfig

// Step is one executable instruction after variable expansion. The set of
// implementations is closed (Exec, Copy, Meta) so the executor's type switch
// is exhaustive.
type Step interface {
	Pos() Pos
	// String is the display and history text, e.g. `RUN /bin/sh -c make`.
	String() string
	isStep()
}

// SourceKind says where COPY/ADD (or a RUN bind mount) reads from.
type SourceKind int

const (
	SourceContext SourceKind = iota // the build context (after .dockerignore)
	SourceStage                     // an earlier stage, by Dockerfile index
	SourceImage                     // an image reference (COPY --from=alpine)
)

// Source names the root a COPY or mount reads from.
type Source struct {
	Kind  SourceKind
	Stage int    // Dockerfile index of the stage when Kind == SourceStage
	Image string // reference when Kind == SourceImage
}

// Heredoc is an inline file: COPY <<EOF name, or an extra RUN heredoc.
type Heredoc struct {
	Name string // COPY: destination file name; RUN: the heredoc word
	// Data is the body. COPY: expanded unless the word was quoted
	// (<<'EOF'). RUN: never expanded here, as in BuildKit.
	Data  string
	Chomp bool // <<- : leading tabs were already stripped from Data
}

// Mount is one RUN --mount, after expansion and with BuildKit's defaults
// applied, so the executor need not know them.
type Mount struct {
	Type string // bind | cache | tmpfs | secret | ssh
	// From is the root Source is read from: the context for a bind mount
	// without from=, the image "scratch" (empty) for every other mount
	// without from=.
	From     Source
	Source   string // path inside From (bind, cache); "" for secret and ssh
	Target   string // absolute; secret: /run/secrets/<id> unless env= only; ssh: /run/buildkit/ssh_agent.<n>
	ReadOnly bool
	// CacheID is the cache id (default: the target as written), the secret
	// id (id=, src= or the target's base name) or the ssh agent id
	// ("default").
	CacheID  string
	Sharing  string // cache: shared (default) | private | locked
	Required bool
	Env      string // secret: expose as this env var
	Size     int64  // tmpfs size limit, 0 = none
	Mode     *uint32
	UID      *uint32
	GID      *uint32
}

// Exec is RUN.
type Exec struct {
	At   Pos    `json:"-"`
	Text string `json:"-"`
	// Args is the argv to execute: the shell form is already wrapped with the
	// effective SHELL (default /bin/sh -c).
	Args     []string
	Env      []string // config Env plus the ARGs in effect (ARGs are not persisted)
	User     string   // as written ("" = root); resolved against the rootfs by the executor
	Dir      string   // absolute WORKDIR ("/" when unset)
	Shell    []string // effective SHELL, for heredoc scripts
	Network  string   // "default" | "none" | "host"
	Security string   // "sandbox" | "insecure"
	Mounts   []Mount
	// Files are inline scripts the executor must provide read-only, mode
	// 0755, as /dev/pipes/<Name> (BuildKit's location) while the command
	// runs. Only a RUN whose whole command is one heredoc starting with
	// "#!" sets it; Args then execute that file through the shell. Other
	// heredocs are folded into the shell command line, so Files is empty.
	Files    []Heredoc
	Platform platform.Platform
	// Proxy holds the predefined proxy args given with --build-arg
	// (HTTP_PROXY, no_proxy, ...) as "K=V". The executor adds them to the
	// environment; as in Docker they stay out of cache keys and history.
	Proxy []string `json:"-"`
}

// Copy is COPY or ADD.
type Copy struct {
	At   Pos    `json:"-"`
	Text string `json:"-"`
	Add  bool
	From Source
	// Srcs are relative to the source root (context, stage rootfs or image
	// rootfs); wildcards allowed. For ADD they may also be http(s) URLs.
	Srcs   []string
	Inline []Heredoc // COPY <<EOF name
	// Dest is absolute (joined with WORKDIR); a trailing "/" is kept because
	// it means "directory".
	Dest       string
	Chown      string // unresolved "user[:group]"; "" = 0:0 (context) or kept (stage/image)
	Chmod      string // octal, normalised to four digits ("0755"); "" = keep
	Excludes   []string
	Link       bool
	Parents    bool
	Checksum   string // ADD --checksum=sha256:...
	KeepGitDir bool
	Unpack     *bool // ADD --unpack; nil = Docker default (local archives unpacked)
	Platform   platform.Platform
}

// Meta is every config-only instruction (ENV LABEL MAINTAINER CMD ENTRYPOINT
// USER EXPOSE VOLUME STOPSIGNAL HEALTHCHECK SHELL ONBUILD WORKDIR ARG).
type Meta struct {
	At   Pos    `json:"-"`
	Text string `json:"-"`
	// Change applies the instruction to a config its caller owns: the
	// stage's config so far, starting from the base config Lower was given.
	// nil for instructions that change no config (ARG). A change, not a
	// snapshot: thousands of LABEL lines cost their own size, not its square.
	Change func(*BaseConfig) `json:"-"`
	// Author is set by MAINTAINER (it lives outside the config in the image).
	Author string
	// Mkdir is set by WORKDIR: the absolute directory to create if missing.
	Mkdir string
	// NoHistory is true for instructions that leave no history entry (ARG).
	NoHistory bool
}

func (s *Exec) Pos() Pos       { return s.At }
func (s *Exec) String() string { return s.Text }
func (*Exec) isStep()          {}
func (s *Copy) Pos() Pos       { return s.At }
func (s *Copy) String() string { return s.Text }
func (*Copy) isStep()          {}
func (s *Meta) Pos() Pos       { return s.At }
func (s *Meta) String() string { return s.Text }
func (*Meta) isStep()          {}
