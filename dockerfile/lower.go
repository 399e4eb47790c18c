package dockerfile

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/command"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// defaultPath is BuildKit's PATH for images that define none (non-Windows).
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Lower expands stage s against its base image's config (the config of the
// FROM image or of the parent stage's result, zero for scratch) and returns
// the executable steps. It is pure: the same plan, stage and base give the
// same steps, and it may run concurrently for different stages.
//
// The stage's AST is re-parsed on every call because BuildKit's Expand
// mutates commands in place.
//
// Start of stage, following BuildKit: the base's ONBUILD triggers run first,
// as if written right after FROM, and are cleared from the config; PATH is
// added when the base defines none (non-Windows); a relative base WORKDIR is
// made absolute. When any of this changes the config, the first step is a
// Meta with NoHistory whose Config is the normalised base, so that "last
// Meta config, else base" is always the stage's resulting config.
//
// ARGs: a stage built FROM another stage inherits the ARG values in effect
// at the end of its parent chain (BuildKit carries them in the LLB state).
// They are recomputed by replaying the parents' ARG and ENV instructions
// against this stage's base Env, which differs from the original only if a
// parent ARG default read a variable that a later ENV in that parent
// changed. ARGs set by image ONBUILD triggers of a parent are not replayed.
func (p *Plan) Lower(s *Stage, base BaseConfig) ([]Step, error) {
	if s == nil || s.Index < 0 || s.Index >= len(p.all) || !slices.Contains(p.Stages, p.all[s.Index]) {
		return nil, &Error{Pos: Pos{File: p.file.Name}, Err: errors.New("stage is not part of this plan")}
	}
	st := p.all[s.Index]
	l := &lowerer{p: p, st: st, lex: shell.NewLex(p.file.escape), args: newArgList(), lint: linter.New(&linter.Config{}),
		budget: newBudget(&base)}
	triggers, err := l.start(base)
	if err != nil {
		return nil, err
	}
	if st.Base.Stage >= 0 {
		if err := l.replayParents(); err != nil {
			return nil, err
		}
	}
	for _, t := range triggers {
		cmd, err := parseTrigger(t, st.At.Line)
		if err != nil {
			return nil, &Error{Pos: st.At, Err: fmt.Errorf("ONBUILD trigger %q: %w", t, err)}
		}
		if err := l.dispatch(cmd); err != nil {
			return nil, err
		}
	}
	for _, n := range st.src.nodes {
		cmd, err := l.parse(n)
		if err != nil {
			return nil, err
		}
		if err := l.dispatch(cmd); err != nil {
			return nil, err
		}
	}
	return l.steps, nil
}

type lowerer struct {
	p      *Plan
	st     *Stage
	lex    *shell.Lex
	lint   *linter.Linter // silent: Parse already reported the findings
	cfg    BaseConfig
	args   *argList
	cmdSet bool // a CMD ran in this stage (see entrypoint)
	replay bool // replaying a parent stage: only ARG and ENV count, no steps
	steps  []Step
	budget *budget
}

func (l *lowerer) parse(n *parser.Node) (instructions.Command, error) {
	v, err := instructions.ParseInstructionWithLinter(n, l.lint)
	if err != nil {
		return nil, wrapErr(err, l.p.file.pos(n.StartLine))
	}
	cmd, ok := v.(instructions.Command)
	if !ok {
		return nil, errorf(l.p.file.pos(n.StartLine), "%s is not allowed here", strings.ToUpper(n.Value))
	}
	return cmd, nil
}

// parseTrigger parses one ONBUILD expression as an instruction placed at
// line. Docker refuses ONBUILD, FROM and MAINTAINER as triggers.
func parseTrigger(expr string, line int) (instructions.Command, error) {
	res, err := parser.Parse(strings.NewReader(expr))
	if err != nil {
		return nil, err
	}
	if len(res.AST.Children) != 1 {
		return nil, errors.New("onbuild trigger should be a single expression")
	}
	n := res.AST.Children[0]
	switch strings.ToLower(n.Value) {
	case command.Onbuild:
		return nil, errors.New("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
	case command.From, command.Maintainer:
		return nil, fmt.Errorf("%s isn't allowed as an ONBUILD trigger", strings.ToUpper(n.Value))
	}
	n.StartLine, n.EndLine = line, line
	v, err := instructions.ParseInstructionWithLinter(n, linter.New(&linter.Config{}))
	if err != nil {
		return nil, err
	}
	cmd, ok := v.(instructions.Command)
	if !ok {
		return nil, fmt.Errorf("%T is not a command type", v)
	}
	return cmd, nil
}

// start normalises the base config and returns its ONBUILD triggers.
func (l *lowerer) start(base BaseConfig) ([]string, error) {
	l.cfg = cloneConfig(base)
	triggers := l.cfg.OnBuild
	l.cfg.OnBuild = nil
	changed := len(triggers) > 0
	if l.st.Platform.OS != "windows" {
		if _, ok := envGet(l.cfg.Env, "PATH"); !ok {
			l.cfg.Env = append(l.cfg.Env, "PATH="+defaultPath)
			changed = true
		}
	}
	if wd := l.cfg.WorkingDir; wd != "" && !path.IsAbs(wd) {
		l.cfg.WorkingDir = path.Join("/", wd)
		changed = true
	}
	if changed {
		from := l.st.Base.Image
		if l.st.Base.Stage >= 0 {
			from = l.p.all[l.st.Base.Stage].displayName()
		}
		// The normalised base replaces the base's fields it touched.
		env, wd := slices.Clone(l.cfg.Env), l.cfg.WorkingDir
		l.budget = newBudget(&l.cfg)
		err := l.emit(&Meta{At: l.st.At, Text: "FROM " + from, NoHistory: true, Change: func(c *BaseConfig) {
			c.OnBuild, c.Env, c.WorkingDir = nil, slices.Clone(env), wd
		}})
		return triggers, err
	}
	return triggers, nil
}

func (s *Stage) displayName() string {
	if s.Name != "" {
		return s.Name
	}
	return strconv.Itoa(s.Index)
}

// replayParents recomputes the ARGs a stage inherits from its parent chain.
func (l *lowerer) replayParents() error {
	var chain []*Stage
	for s := l.st; s.Base.Stage >= 0; {
		s = l.p.all[s.Base.Stage]
		chain = append(chain, s)
	}
	saved := l.cfg
	l.cfg = cloneConfig(saved)
	l.replay = true
	defer func() { l.cfg, l.replay = saved, false }()
	for i := len(chain) - 1; i >= 0; i-- {
		for _, n := range chain[i].src.nodes {
			if v := strings.ToLower(n.Value); v != command.Arg && v != command.Env {
				continue
			}
			cmd, err := l.parse(n)
			if err != nil {
				return err
			}
			if err := l.dispatch(cmd); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *lowerer) scope() scope { return scope{env: l.cfg.Env, args: l.args} }

func (l *lowerer) expand(word string) (string, error) {
	return expandWith(l.lex, word, l.scope())
}

func (l *lowerer) pos(cmd instructions.Command) Pos {
	if line := rangeLine(cmd.Location()); line > 0 {
		return l.p.file.pos(line)
	}
	return l.st.At
}

// emit adds a step, within the stage's limits (limits.go).
func (l *lowerer) emit(s Step) error {
	if l.replay {
		return nil
	}
	if err := l.budget.add(s); err != nil {
		return err
	}
	l.steps = append(l.steps, s)
	return nil
}

// meta applies change (nil: none) to the lowerer's config and emits a Meta
// step carrying it, for the executor to apply to the stage's config.
func (l *lowerer) meta(at Pos, text string, change func(*BaseConfig), opts ...func(*Meta)) error {
	if change != nil {
		change(&l.cfg)
	}
	m := &Meta{At: at, Text: text, Change: change}
	for _, o := range opts {
		o(m)
	}
	return l.emit(m)
}

// dispatch expands one instruction (except ARG, whose default is expanded
// only if used, like BuildKit) and applies it.
func (l *lowerer) dispatch(cmd instructions.Command) error {
	at := l.pos(cmd)
	if _, isArg := cmd.(*instructions.ArgCommand); !isArg {
		if ex, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
			if err := ex.Expand(l.expand); err != nil {
				return wrapErr(err, at)
			}
		}
	}
	if ex, ok := cmd.(instructions.SupportsSingleWordExpansionRaw); ok {
		raw := rawLexer()
		if err := ex.ExpandRaw(func(w string) (string, error) { return expandWith(raw, w, l.scope()) }); err != nil {
			return wrapErr(err, at)
		}
	}
	var err error
	switch c := cmd.(type) {
	case *instructions.ArgCommand:
		err = l.arg(c, at)
	case *instructions.EnvCommand:
		err = l.env(c, at)
	case *instructions.LabelCommand:
		err = l.label(c, at)
	case *instructions.MaintainerCommand:
		err = l.meta(at, "MAINTAINER "+c.Maintainer, nil, func(m *Meta) { m.Author = c.Maintainer })
	case *instructions.CmdCommand:
		cmd := l.withShell(c.ShellDependantCmdLine)
		l.cmdSet = true
		l.budget.scalar("cmd", cmd...)
		err = l.meta(at, "CMD "+jsonArray(cmd), func(c *BaseConfig) {
			c.Cmd = slices.Clone(cmd)
			c.ArgsEscaped = true //nolint:staticcheck // BuildKit sets it for Docker compatibility
		})
	case *instructions.EntrypointCommand:
		err = l.entrypoint(c, at)
	case *instructions.HealthCheckCommand:
		h := *c.Health
		h.Test = slices.Clone(h.Test)
		l.budget.scalar("healthcheck", h.Test...)
		err = l.meta(at, healthText(&h), func(c *BaseConfig) {
			hc := h
			hc.Test = slices.Clone(h.Test)
			c.Healthcheck = &hc
		})
	case *instructions.ExposeCommand:
		err = l.expose(c, at)
	case *instructions.UserCommand:
		user := c.User
		l.budget.scalar("user", user)
		err = l.meta(at, "USER "+user, func(c *BaseConfig) { c.User = user })
	case *instructions.VolumeCommand:
		err = l.volume(c, at)
	case *instructions.StopSignalCommand:
		err = l.stopSignal(c, at)
	case *instructions.ShellCommand:
		shell := slices.Clone(c.Shell)
		l.budget.scalar("shell", shell...)
		err = l.meta(at, "SHELL "+jsonArray(shell), func(c *BaseConfig) { c.Shell = slices.Clone(shell) })
	case *instructions.OnbuildCommand:
		expr := c.Expression
		l.budget.sets += len(expr)
		err = l.meta(at, "ONBUILD "+expr, func(c *BaseConfig) { c.OnBuild = append(c.OnBuild, expr) })
	case *instructions.WorkdirCommand:
		wd := workdir(l.cfg.WorkingDir, c.Path)
		l.budget.scalar("workdir", wd)
		err = l.meta(at, "WORKDIR "+wd, func(c *BaseConfig) { c.WorkingDir = wd }, func(m *Meta) {
			if wd != "/" { // BuildKit creates no layer for "/"
				m.Mkdir = wd
			}
		})
	case *instructions.RunCommand:
		err = l.run(c, at)
	case *instructions.CopyCommand:
		from := c.From
		if strings.Contains(from, "$") {
			// As collectRefs expanded it to find the stage it reads.
			if from, err = l.expand(from); err != nil {
				break
			}
		}
		err = l.copy(copySpec{
			SourcesAndDest: c.SourcesAndDest, code: c.String(), from: from, chown: c.Chown, chmod: c.Chmod,
			link: c.Link, parents: c.Parents, excludes: c.ExcludePatterns,
		}, at)
	case *instructions.AddCommand:
		err = l.copy(copySpec{
			SourcesAndDest: c.SourcesAndDest, code: c.String(), add: true, chown: c.Chown, chmod: c.Chmod,
			link: c.Link, excludes: c.ExcludePatterns, keepGitDir: c.KeepGitDir, checksum: c.Checksum, unpack: c.Unpack,
		}, at)
	default:
		err = fmt.Errorf("unsupported instruction %s", strings.ToUpper(cmd.Name()))
	}
	if err != nil {
		return wrapErr(err, at)
	}
	return nil
}

// arg resolves each ARG value: --build-arg, else the default expanded with
// the current scope, else (for `ARG NAME`) the global value of NAME, which
// is how meta ARGs and the automatic platform args enter a stage.
func (l *lowerer) arg(c *instructions.ArgCommand, at Pos) error {
	parts := make([]string, 0, len(c.Args))
	for _, kv := range c.Args {
		if strings.Contains(kv.Key, "$") {
			// ARG ${NAME}=v: the name is expanded too, as in BuildKit.
			k, err := l.expand(kv.Key)
			if err != nil {
				return err
			}
			if k == "" {
				return fmt.Errorf("ARG %s: the name expands to nothing", kv.Key)
			}
			kv.Key = k
		}
		val, ok := l.p.buildArgs[kv.Key]
		switch {
		case ok:
		case kv.Value != nil:
			v, err := l.expand(*kv.Value)
			if err != nil {
				return err
			}
			val, ok = v, true
		default:
			val, ok = l.p.globals.get(kv.Key)
		}
		if !ok {
			parts = append(parts, kv.Key)
			continue
		}
		if err := l.args.set(kv.Key, val); err != nil {
			return err
		}
		parts = append(parts, kv.Key+"="+val)
	}
	return l.meta(at, "ARG "+strings.Join(parts, " "), nil, func(m *Meta) { m.NoHistory = true })
}

func (l *lowerer) env(c *instructions.EnvCommand, at Pos) error {
	parts := make([]string, 0, len(c.Env))
	kvs := slices.Clone(c.Env)
	for _, kv := range kvs {
		parts = append(parts, kv.Key+"="+kv.Value)
		if old, had := envGet(l.cfg.Env, kv.Key); had {
			l.budget.env -= len(kv.Key) + len(old) + 1
		}
		l.budget.env += len(kv.Key) + len(kv.Value) + 1
	}
	return l.meta(at, "ENV "+strings.Join(parts, " "), func(c *BaseConfig) {
		for _, kv := range kvs {
			c.Env = envSet(c.Env, kv.Key, kv.Value)
		}
	})
}

func (l *lowerer) label(c *instructions.LabelCommand, at Pos) error {
	parts := make([]string, 0, len(c.Labels))
	kvs := slices.Clone(c.Labels)
	for _, kv := range kvs {
		parts = append(parts, kv.Key+"="+kv.Value)
		if old, had := l.cfg.Labels[kv.Key]; had {
			l.budget.labels -= len(kv.Key) + len(old) + 1
		}
		l.budget.labels += len(kv.Key) + len(kv.Value) + 1
	}
	return l.meta(at, "LABEL "+strings.Join(parts, " "), func(c *BaseConfig) {
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		for _, kv := range kvs {
			c.Labels[kv.Key] = kv.Value
		}
	})
}

// entrypoint follows BuildKit's dispatchEntrypoint exactly: setting an
// ENTRYPOINT clears Cmd unless a CMD instruction ran earlier in this same
// stage (ONBUILD triggers included). A CMD inherited from the base image or
// parent stage is therefore dropped, one set just before is kept.
func (l *lowerer) entrypoint(c *instructions.EntrypointCommand, at Pos) error {
	ep, keepCmd := l.withShell(c.ShellDependantCmdLine), l.cmdSet
	l.budget.scalar("entrypoint", ep...)
	if !keepCmd {
		l.budget.scalar("cmd")
	}
	return l.meta(at, "ENTRYPOINT "+jsonArray(ep), func(c *BaseConfig) {
		c.Entrypoint = slices.Clone(ep)
		if !keepCmd {
			c.Cmd = nil
		}
	})
}

// withShell returns the argv for CMD/ENTRYPOINT/RUN: exec form as is, shell
// form joined and wrapped with the effective SHELL.
func (l *lowerer) withShell(c instructions.ShellDependantCmdLine) []string {
	if !c.PrependShell {
		return slices.Clone(c.CmdLine)
	}
	return append(l.shell(), strings.Join(c.CmdLine, " "))
}

func (l *lowerer) shell() []string {
	if len(l.cfg.Shell) > 0 {
		return slices.Clone(l.cfg.Shell)
	}
	return defaultShell(l.st.Platform.OS)
}

func (l *lowerer) expose(c *instructions.ExposeCommand, at Pos) error {
	var ports []string
	for _, word := range c.Ports {
		if err := checkExpansion(word, l.scope()); err != nil {
			return err
		}
		words, err := l.lex.ProcessWords(word, l.scope())
		if err != nil {
			return err
		}
		for _, w := range words {
			ps, err := exposedPorts(w)
			if err != nil {
				return err
			}
			ports = append(ports, ps...)
		}
	}
	l.budget.sets += sizeOf(ports)
	return l.meta(at, "EXPOSE "+strings.Join(ports, " "), func(c *BaseConfig) {
		if c.ExposedPorts == nil {
			c.ExposedPorts = map[string]struct{}{}
		}
		for _, p := range ports {
			c.ExposedPorts[p] = struct{}{}
		}
	})
}

func (l *lowerer) volume(c *instructions.VolumeCommand, at Pos) error {
	vols := slices.Clone(c.Volumes)
	for _, v := range vols {
		if v == "" {
			return errors.New("VOLUME specified can not be an empty string")
		}
	}
	l.budget.sets += sizeOf(vols)
	return l.meta(at, "VOLUME "+strings.Join(vols, " "), func(c *BaseConfig) {
		if c.Volumes == nil {
			c.Volumes = map[string]struct{}{}
		}
		for _, v := range vols {
			c.Volumes[v] = struct{}{}
		}
	})
}

func (l *lowerer) stopSignal(c *instructions.StopSignalCommand, at Pos) error {
	if err := c.CheckPlatform(l.st.Platform.OS); err != nil {
		return err
	}
	if err := checkSignal(c.Signal); err != nil {
		return err
	}
	sig := c.Signal
	l.budget.scalar("stopsignal", sig)
	return l.meta(at, "STOPSIGNAL "+sig, func(c *BaseConfig) { c.StopSignal = sig })
}

// workdir resolves WORKDIR against the current one ("/" when unset).
func workdir(cur, p string) string {
	if cur == "" {
		cur = "/"
	}
	if p == "" {
		return path.Clean(path.Join("/", cur))
	}
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	return path.Join("/", cur, p)
}
