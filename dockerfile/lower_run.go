package dockerfile

import (
	"errors"
	"fmt"
	"math"
	"path"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// pipesDir is where BuildKit mounts the script of a shebang heredoc.
const pipesDir = "/dev/pipes"

func (l *lowerer) run(c *instructions.RunCommand, at Pos) error {
	text := "RUN " + jsonArray(c.CmdLine)
	if c.PrependShell {
		text = "RUN " + strings.Join(c.CmdLine, " ")
	}
	line, files, err := l.heredocCommand(c)
	if err != nil {
		return err
	}
	args := line
	if c.PrependShell {
		args = append(l.shell(), strings.Join(line, " "))
	}
	if len(args) == 0 {
		return errors.New("RUN requires a command")
	}
	mounts, err := l.mounts(c)
	if err != nil {
		return err
	}
	sc := l.scope()
	step := &Exec{
		At:       at,
		Text:     text,
		Args:     args,
		Env:      sc.environ(),
		User:     l.cfg.User,
		Dir:      workdir(l.cfg.WorkingDir, ""),
		Shell:    l.shell(),
		Network:  instructions.GetNetwork(c),
		Security: instructions.GetSecurity(c),
		Mounts:   mounts,
		Files:    files,
		Platform: l.st.Platform,
		Proxy:    l.proxy(),
	}
	return l.emit(step)
}

// heredocCommand applies BuildKit's RUN heredoc rules and returns the
// command line (before the shell is prepended):
//   - `RUN <<EOF` whose body starts with "#!": the body becomes a file under
//     /dev/pipes and the command line is that file's path;
//   - `RUN <<EOF` otherwise: the body itself is the shell command;
//   - heredocs inside a longer command: the text is reassembled and the
//     shell interprets the heredocs.
func (l *lowerer) heredocCommand(c *instructions.RunCommand) ([]string, []Heredoc, error) {
	args := c.CmdLine
	if len(c.Files) == 0 {
		return slices.Clone(args), nil, nil
	}
	if len(args) != 1 || !c.PrependShell {
		return nil, nil, fmt.Errorf("parsing produced an invalid run command: %v", args)
	}
	if parser.MustParseHeredoc(args[0]) == nil {
		var b strings.Builder
		b.WriteString(args[0])
		for _, f := range c.Files {
			b.WriteString("\n" + f.Data + f.Name)
		}
		return []string{b.String()}, nil, nil
	}
	f := c.Files[0]
	data := f.Data
	if f.Chomp {
		data = parser.ChompHeredocContent(data)
	}
	if l.st.Platform.OS == "windows" || !strings.HasPrefix(data, "#!") {
		return []string{data}, nil, nil
	}
	if f.Name == "" || f.Name == "." || f.Name == ".." || strings.Contains(f.Name, "/") {
		return nil, nil, fmt.Errorf("invalid heredoc name %q for a script", f.Name)
	}
	return []string{path.Join(pipesDir, f.Name)}, []Heredoc{{Name: f.Name, Data: data, Chomp: f.Chomp}}, nil
}

// proxy returns the predefined proxy build args, sorted by key.
func (l *lowerer) proxy() []string {
	var out []string
	for k, v := range l.p.buildArgs {
		if isProxyArg(k) {
			out = append(out, k+"="+v)
		}
	}
	slices.Sort(out)
	return out
}

// mounts converts RUN --mount flags (already expanded by RunCommand.Expand)
// and applies BuildKit's defaults (convert_runmount.go, convert_secrets.go,
// convert_ssh.go) so that the executor sees final values.
func (l *lowerer) mounts(c *instructions.RunCommand) ([]Mount, error) {
	dir := workdir(l.cfg.WorkingDir, "")
	var out []Mount
	sshN := 0
	for _, m := range instructions.GetMounts(c) {
		mm := Mount{
			Type:     string(m.Type),
			Source:   m.Source,
			Target:   m.Target,
			ReadOnly: m.ReadOnly,
			CacheID:  m.CacheID,
			Sharing:  string(m.CacheSharing),
			Required: m.Required,
			Size:     m.SizeLimit,
		}
		if m.Env != nil {
			mm.Env = *m.Env
		}
		var err error
		if mm.Mode, err = u32(m.Mode, "mode"); err != nil {
			return nil, err
		}
		if mm.UID, err = u32(m.UID, "uid"); err != nil {
			return nil, err
		}
		if mm.GID, err = u32(m.GID, "gid"); err != nil {
			return nil, err
		}
		switch {
		case m.From != "":
			if mm.From, err = l.source(m.From); err != nil {
				return nil, err
			}
			if mm.From.Kind == SourceStage && mm.From.Stage == l.st.Index {
				return nil, fmt.Errorf("cannot mount from stage %q to %q: it is the current stage", m.From, m.Target)
			}
		case m.Type == instructions.MountTypeBind:
			mm.From = Source{Kind: SourceContext}
		default:
			mm.From = Source{Kind: SourceImage, Image: "scratch"}
		}
		switch m.Type {
		case instructions.MountTypeSecret:
			id := m.CacheID
			if m.Source != "" {
				id = m.Source
			}
			if id == "" {
				if m.Target == "" {
					return nil, errors.New("one of source, target required")
				}
				id = path.Base(m.Target)
			}
			mm.CacheID, mm.Source = id, ""
			if mm.Target == "" && m.Env == nil {
				mm.Target = "/run/secrets/" + path.Base(id)
			}
		case instructions.MountTypeSSH:
			if m.Source != "" {
				return nil, errors.New("ssh does not support source")
			}
			if mm.CacheID == "" {
				mm.CacheID = "default"
			}
			if mm.Target == "" {
				mm.Target = fmt.Sprintf("/run/buildkit/ssh_agent.%d", sshN)
			}
			sshN++
		case instructions.MountTypeCache:
			if mm.CacheID == "" {
				mm.CacheID = path.Clean(m.Target)
			}
			if mm.Sharing == "" {
				mm.Sharing = string(instructions.MountSharingShared)
			}
		}
		// A relative (or empty) target is joined to WORKDIR, as in BuildKit;
		// only an env-only secret has no target at all.
		if m.Type != instructions.MountTypeSecret || mm.Target != "" {
			if path.IsAbs(mm.Target) {
				mm.Target = path.Clean(mm.Target)
			} else {
				mm.Target = path.Join(dir, mm.Target)
			}
			if mm.Target == "/" {
				return nil, fmt.Errorf("invalid mount target %q", m.Target)
			}
		}
		out = append(out, mm)
	}
	return out, nil
}

func u32(v *uint64, what string) (*uint32, error) {
	if v == nil {
		return nil, nil
	}
	if *v > math.MaxUint32 {
		return nil, fmt.Errorf("invalid value %d for %s", *v, what)
	}
	x := uint32(*v)
	return &x, nil
}
