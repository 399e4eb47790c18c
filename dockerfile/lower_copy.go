package dockerfile

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// copySpec is what COPY and ADD have in common after expansion.
type copySpec struct {
	instructions.SourcesAndDest
	code       string // the instruction as written, to spot <<- heredocs
	add        bool
	from       string
	chown      string
	chmod      string
	link       bool
	parents    bool
	excludes   []string
	keepGitDir *bool
	checksum   string
	unpack     *bool
}

func (l *lowerer) copy(c copySpec, at Pos) error {
	name := "COPY"
	if c.add {
		name = "ADD"
	}
	chmod, err := normChmod(c.chmod)
	if err != nil {
		return err
	}
	if c.chown != "" && c.link && chownByName(c.chown) {
		return fmt.Errorf("--chown=%s: user and group names can't be resolved when used with --link, use numeric uid[:gid] instead", c.chown)
	}
	for _, src := range c.SourcePaths {
		if !c.add && (isURL(src) || IsGitSource(src)) {
			return fmt.Errorf("source can't be a URL for COPY: %s", src)
		}
	}
	if c.checksum != "" {
		if len(c.SourcePaths) != 1 {
			return errors.New("checksum can't be specified for multiple sources")
		}
		if !isURL(c.SourcePaths[0]) && !IsGitSource(c.SourcePaths[0]) {
			return errors.New("checksum requires HTTP(S) or Git sources")
		}
		if !IsGitSource(c.SourcePaths[0]) {
			if err := checkDigest(c.checksum); err != nil {
				return err
			}
		}
	}
	src := Source{Kind: SourceContext}
	if c.from != "" {
		if src, err = l.source(c.from); err != nil {
			return err
		}
		if src.Kind == SourceStage && src.Stage == l.st.Index {
			return fmt.Errorf("circular dependency detected on stage: %s", l.stageName())
		}
	}
	step := &Copy{
		At:         at,
		Add:        c.add,
		From:       src,
		Srcs:       c.SourcePaths,
		Dest:       destPath(l.cfg.WorkingDir, c.DestPath),
		Chown:      c.chown,
		Chmod:      chmod,
		Excludes:   c.excludes,
		Link:       c.link,
		Parents:    c.parents,
		Checksum:   c.checksum,
		KeepGitDir: c.keepGitDir != nil && *c.keepGitDir,
		Unpack:     c.unpack,
		Platform:   l.st.Platform,
	}
	for _, sc := range c.SourceContents {
		step.Inline = append(step.Inline, Heredoc{Name: sc.Path, Data: sc.Data, Chomp: chomped(c.code, sc.Path)})
	}
	step.Text = copyText(name, c)
	return l.emit(step)
}

// copyText is "COPY [flags] srcs... [<<heredoc...] dest" with the expanded
// values and the destination as written.
func copyText(name string, c copySpec) string {
	parts := []string{name}
	flag := func(k, v string) {
		if v != "" {
			parts = append(parts, "--"+k+"="+v)
		}
	}
	flag("from", c.from)
	flag("chown", c.chown)
	flag("chmod", c.chmod)
	if c.link {
		parts = append(parts, "--link")
	}
	if c.parents {
		parts = append(parts, "--parents")
	}
	for _, e := range c.excludes {
		flag("exclude", e)
	}
	flag("checksum", c.checksum)
	if c.keepGitDir != nil {
		flag("keep-git-dir", strconv.FormatBool(*c.keepGitDir))
	}
	if c.unpack != nil {
		flag("unpack", strconv.FormatBool(*c.unpack))
	}
	for _, src := range c.SourcePaths {
		parts = append(parts, RedactURL(src))
	}
	for _, sc := range c.SourceContents {
		parts = append(parts, "<<"+sc.Path)
	}
	return strings.Join(append(parts, c.DestPath), " ")
}

// source resolves --from / from=: a stage name or index, else an image.
func (l *lowerer) source(from string) (Source, error) {
	j, ok, err := l.p.lookupStage(from)
	if err != nil {
		return Source{}, err
	}
	if !ok {
		return Source{Kind: SourceImage, Image: from}, nil
	}
	// ONBUILD triggers of a base image are only seen now; the stage they
	// name must already be part of the plan.
	if !l.p.planned(j) {
		return Source{}, fmt.Errorf("stage %q is not part of the build plan (referenced by an ONBUILD trigger of the base image)", from)
	}
	return Source{Kind: SourceStage, Stage: j}, nil
}

func (p *Plan) planned(index int) bool {
	for _, s := range p.Stages {
		if s.Index == index {
			return true
		}
	}
	return false
}

func (l *lowerer) stageName() string {
	if l.st.Name != "" {
		return l.st.Name
	}
	return "stage-" + strconv.Itoa(l.st.Index)
}

// destPath makes a COPY destination absolute against WORKDIR. A trailing
// "/" (or "/.", or "." / "" for the WORKDIR itself) means "into this
// directory" and is kept as a single trailing slash.
func destPath(wd, p string) string {
	if wd == "" {
		wd = "/"
	}
	if p == "" || p == "." {
		p = "./"
	}
	dir := strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.")
	var out string
	if path.IsAbs(p) {
		out = path.Clean(p)
	} else {
		out = path.Join("/", wd, p)
	}
	if dir && out != "/" {
		out += "/"
	}
	return out
}

// normChmod accepts octal modes up to 07777 (BuildKit also accepts
// symbolic modes such as u+x; we do not) and returns them as "0755".
func normChmod(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o7777 {
		return "", fmt.Errorf("invalid chmod parameter: '%v'. it should be octal string and between 0 and 07777", s)
	}
	return fmt.Sprintf("%04o", v), nil
}

// chownByName reports a user or group given by name rather than number.
func chownByName(s string) bool {
	u, g, _ := strings.Cut(s, ":")
	return (u != "" && !isDigits(u)) || (g != "" && !isDigits(g))
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// IsGitSource is a small approximation of BuildKit's dfgitutil.ParseGitRef:
// git@host:repo, git:// and ssh:// URLs, and http(s) URLs of a .git repo.
func IsGitSource(s string) bool {
	switch {
	case strings.HasPrefix(s, "git@"), strings.HasPrefix(s, "git://"), strings.HasPrefix(s, "ssh://"):
		return true
	case isURL(s):
		u, _, _ := strings.Cut(s, "#")
		return strings.HasSuffix(u, ".git")
	}
	return false
}

var digestRe = regexp.MustCompile(`^(sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$`)

func checkDigest(s string) error {
	if !digestRe.MatchString(s) {
		return fmt.Errorf("invalid checksum digest %q", s)
	}
	return nil
}

// chomped reports whether heredoc name was introduced with <<- in code.
func chomped(code, name string) bool {
	for _, q := range []string{"", `"`, `'`} {
		if strings.Contains(code, "<<-"+q+name+q) {
			return true
		}
	}
	return false
}
