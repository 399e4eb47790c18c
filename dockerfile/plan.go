package dockerfile

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/builder-dev/builder/platform"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// PlanOptions are the build inputs that select and parameterise stages.
type PlanOptions struct {
	// Target is a stage name (case-insensitive) or Dockerfile index; "" means
	// the last stage.
	Target string
	// BuildArgs are --build-arg values; they override ARG defaults.
	BuildArgs map[string]string
	// Platform is the target platform (TARGETPLATFORM, TARGETOS, ...).
	// Zero means BuildPlatform.
	Platform platform.Platform
	// BuildPlatform is the platform the builder runs on (BUILDPLATFORM, ...).
	// Zero means linux on this binary's architecture.
	BuildPlatform platform.Platform
}

// Plan is the set of stages a target needs, with FROM lines expanded and
// stage references resolved. A Plan is immutable; Lower may be called
// concurrently for different stages.
type Plan struct {
	Stages     []*Stage  // only the stages the target needs, in dependency order; target is last
	UnusedArgs []string  // --build-arg keys no ARG declares (sorted), builtin args excluded
	Warnings   []Warning // linter findings that need the build args (UndefinedArgInFrom, ...)

	file      *File
	all       []*Stage          // every stage of the file, by Dockerfile index
	names     map[string]int    // lower-cased AS name -> index; a later duplicate wins
	buildArgs map[string]string // copy of PlanOptions.BuildArgs
	globals   *argList          // automatic platform args + meta ARGs
	target    platform.Platform
}

// Stage is one FROM section of the Dockerfile.
type Stage struct {
	Index int    // position in the Dockerfile (0-based); Source.Stage refers to this
	Name  string // lower-cased AS name, "" if none
	At    Pos
	Base  Base
	Deps  []int // Dockerfile indexes of stages this one reads (FROM, COPY --from, RUN --mount from=, ONBUILD of a parent stage), sorted
	// Platform is the platform every step of the stage runs for: the
	// FROM --platform value, the parent stage's platform for FROM <stage>
	// (BuildKit lets the parent win), else the plan's target platform.
	Platform platform.Platform

	src  *fileStage
	refs []stageRef // every stage reference, checked when the stage is planned
}

// Base is the expanded FROM of a stage.
type Base struct {
	Image    string             // expanded FROM reference ("scratch" allowed); "" when Stage >= 0
	Stage    int                // Dockerfile index of an earlier stage, or -1
	Platform *platform.Platform // expanded FROM --platform; nil = plan platform
}

// stageRef records one reference to another stage, for error messages.
type stageRef struct {
	index int
	what  string // "copy", "mount" or "from"
	name  string
	at    Pos
}

// Plan expands FROM lines with the global ARGs, resolves stage references,
// drops the stages the target does not need and orders the rest.
func (f *File) Plan(opts PlanOptions) (*Plan, error) {
	p := &Plan{
		file:      f,
		names:     map[string]int{},
		buildArgs: maps.Clone(opts.BuildArgs),
		globals:   newArgList(),
	}
	if p.buildArgs == nil {
		p.buildArgs = map[string]string{}
	}
	build := opts.BuildPlatform
	if build.OS == "" || build.Architecture == "" {
		build = platform.Host()
	}
	build = platform.Normalize(build)
	p.target = opts.Platform
	if p.target.OS == "" || p.target.Architecture == "" {
		p.target = build
	}
	p.target = platform.Normalize(p.target)

	cfg := f.lintCfg
	cfg.Warn = func(rule, _, _, msg string, loc []parser.Range) {
		p.Warnings = append(p.Warnings, Warning{Rule: rule, Msg: msg, At: f.pos(rangeLine(loc))})
	}
	lint := linter.New(&cfg)
	lex := shell.NewLex(f.escape)

	// Automatic args first, so that meta ARG defaults and FROM can use them;
	// a --build-arg of the same name overrides them, as in BuildKit.
	for _, kv := range platformArgs(p.target, build, f.targetStageName(opts.Target)) {
		v := kv[1]
		if ov, ok := p.buildArgs[kv[0]]; ok {
			v = ov
		}
		if err := p.globals.set(kv[0], v); err != nil {
			return nil, &Error{Pos: Pos{File: f.Name}, Err: fmt.Errorf("--build-arg %s: %w", kv[0], err)}
		}
	}
	declared := map[string]bool{}
	for _, a := range f.metaArgs {
		for _, kv := range a.Args {
			if strings.Contains(kv.Key, "$") {
				// ARG ${NAME}=v: the name is expanded too, as in BuildKit.
				k, err := expandWith(lex, kv.Key, p.globals)
				if err == nil && k == "" {
					err = fmt.Errorf("ARG %s: the name expands to nothing", kv.Key)
				}
				if err != nil {
					return nil, wrapErr(err, f.pos(rangeLine(a.Location())))
				}
				kv.Key = k
			}
			declared[kv.Key] = true
			if v, ok := p.buildArgs[kv.Key]; ok {
				if err := p.globals.set(kv.Key, v); err != nil {
					return nil, wrapErr(err, f.pos(rangeLine(a.Location())))
				}
				continue
			}
			if kv.Value == nil {
				continue
			}
			v, err := expandWith(lex, *kv.Value, p.globals)
			if err == nil {
				err = p.globals.set(kv.Key, v)
			}
			if err != nil {
				return nil, wrapErr(err, f.pos(rangeLine(a.Location())))
			}
		}
	}

	for i, fs := range f.stages {
		s, err := p.planStage(i, fs, lex, lint, declared)
		if err != nil {
			return nil, err
		}
		p.all = append(p.all, s)
		if s.Name != "" {
			p.names[s.Name] = i
		}
	}
	for _, s := range p.all {
		if err := p.collectRefs(s); err != nil {
			return nil, err
		}
	}
	target, err := p.resolveTarget(opts.Target)
	if err != nil {
		return nil, err
	}
	if err := p.prune(target); err != nil {
		return nil, err
	}
	p.UnusedArgs = f.unusedArgs(p.buildArgs, declared)
	slices.SortStableFunc(p.Warnings, func(a, b Warning) int { return cmp.Compare(a.At.Line, b.At.Line) })
	if cfg.ReturnAsError {
		if err := lintError(p.Warnings); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// targetStageName is BuildKit's TARGETSTAGE value: the target as given,
// else the last stage's name, else "default".
func (f *File) targetStageName(target string) string {
	if target == "" {
		target = f.stages[len(f.stages)-1].st.Name
	}
	if target == "" {
		return "default"
	}
	return target
}

// planStage expands FROM and --platform with the global args only.
func (p *Plan) planStage(i int, fs *fileStage, lex *shell.Lex, lint *linter.Linter, declared map[string]bool) (*Stage, error) {
	s := &Stage{Index: i, Name: fs.st.Name, At: fs.at, src: fs, Base: Base{Stage: -1}}
	lint = lint.WithMergedConfigFromComments(fs.st.Comments)
	undefined := func(unmatched map[string]struct{}) {
		for _, k := range slices.Sorted(maps.Keys(unmatched)) {
			if _, ok := p.globals.get(k); !ok && !declared[k] {
				lint.Run(&linter.RuleUndefinedArgInFrom, fs.st.Location, linter.RuleUndefinedArgInFrom.Format(k, ""))
			}
		}
	}
	if err := checkExpansion(fs.st.BaseName, p.globals); err != nil {
		return nil, wrapErr(err, fs.at)
	}
	m, err := lex.ProcessWordWithMatches(fs.st.BaseName, p.globals)
	if err != nil {
		return nil, wrapErr(err, fs.at)
	}
	undefined(m.Unmatched)
	if m.Result == "" {
		return nil, errorf(fs.at, "base name (%s) should not be blank", fs.st.BaseName)
	}
	if j, ok := p.names[strings.ToLower(m.Result)]; ok {
		s.Base.Stage = j
		s.refs = append(s.refs, stageRef{index: j, what: "from", name: m.Result, at: fs.at})
	} else {
		s.Base.Image = m.Result
	}
	if fs.st.Platform != "" {
		if err := checkExpansion(fs.st.Platform, p.globals); err != nil {
			return nil, wrapErr(err, fs.at)
		}
		pm, err := lex.ProcessWordWithMatches(fs.st.Platform, p.globals)
		if err != nil {
			return nil, wrapErr(fmt.Errorf("failed to process arguments for platform %s: %w", fs.st.Platform, err), fs.at)
		}
		undefined(pm.Unmatched)
		if pm.Result == "" {
			return nil, errorf(fs.at, "empty platform value from expression %s", fs.st.Platform)
		}
		plat, err := platform.Parse(pm.Result)
		if err != nil {
			return nil, errorf(fs.at, "failed to parse platform %s: %w", fs.st.Platform, err)
		}
		s.Base.Platform = &plat
		platformLint(lint, fs, pm, p.globals)
	}
	switch {
	case s.Base.Stage >= 0:
		s.Platform = p.all[s.Base.Stage].Platform
	case s.Base.Platform != nil:
		s.Platform = *s.Base.Platform
	default:
		s.Platform = p.target
	}
	return s, nil
}

// platformLint runs RedundantTargetPlatform and
// FromPlatformFlagConstDisallowed, as BuildKit does for FROM --platform.
func platformLint(lint *linter.Linter, fs *fileStage, m shell.ProcessWordResult, globals *argList) {
	if len(m.Matched) == 1 && len(m.Unmatched) == 0 {
		if _, ok := m.Matched["TARGETPLATFORM"]; ok {
			if v, _ := globals.get("TARGETPLATFORM"); v == m.Result {
				lint.Run(&linter.RuleRedundantTargetPlatform, fs.st.Location, linter.RuleRedundantTargetPlatform.Format(fs.st.Platform))
			}
		}
	}
	if len(m.Matched) > 0 || len(m.Unmatched) > 0 {
		return
	}
	plat, err := platform.Parse(m.Result)
	if err != nil || strings.Contains(fs.st.Name, plat.OS) || strings.Contains(fs.st.Name, plat.Architecture) {
		return
	}
	lint.Run(&linter.RuleFromPlatformFlagConstDisallowed, fs.st.Location, linter.RuleFromPlatformFlagConstDisallowed.Format(m.Result))
}

// collectRefs records the stages a stage reads besides its FROM: COPY
// --from, RUN --mount from=, and the ONBUILD triggers of a parent stage
// (they run in this stage). Triggers inherited from an image are only known
// at Lower time and must name stages that are already part of the plan.
func (p *Plan) collectRefs(s *Stage) error {
	cmds := slices.Clone(s.src.st.Commands)
	if s.Base.Stage >= 0 {
		parent := p.all[s.Base.Stage]
		for _, c := range parent.src.st.Commands {
			ob, ok := c.(*instructions.OnbuildCommand)
			if !ok {
				continue
			}
			tc, err := parseTrigger(ob.Expression, s.At.Line)
			if err != nil {
				return &Error{Pos: s.At, Err: err}
			}
			cmds = append(cmds, tc)
		}
	}
	scope := p.globals.clone() // the stage's ARGs so far, for COPY --from=$ARG
	lex := shell.NewLex(p.file.escape)
	for _, c := range cmds {
		at := s.At
		if l := rangeLine(c.Location()); l > 0 {
			at = p.file.pos(l)
		}
		switch c := c.(type) {
		case *instructions.ArgCommand:
			for _, kv := range c.Args {
				if v, ok := p.buildArgs[kv.Key]; ok {
					scope.set(kv.Key, v)
				} else if kv.Value != nil {
					if v, err := expandWith(lex, *kv.Value, scope); err == nil {
						scope.set(kv.Key, v)
					}
				}
			}
		case *instructions.CopyCommand:
			if c.From == "" {
				continue
			}
			from := c.From
			if strings.Contains(from, "$") {
				// buildah expands ARGs in --from (BuildKit refuses): the
				// stage's ARG scope at this line names the stage or image.
				v, err := expandWith(lex, from, scope)
				if err != nil {
					return &Error{Pos: at, Err: fmt.Errorf("COPY --from=%s: %w", from, err)}
				}
				if v == "" {
					return &Error{Pos: at, Err: fmt.Errorf("COPY --from=%s expands to nothing", from)}
				}
				from = v
			}
			if j, ok, err := p.lookupStage(from); err != nil {
				return &Error{Pos: at, Err: err}
			} else if ok {
				s.refs = append(s.refs, stageRef{index: j, what: "copy", name: from, at: at})
			}
		case *instructions.RunCommand:
			for _, m := range instructions.GetMounts(c) {
				if m.From == "" {
					continue
				}
				if j, ok, err := p.lookupStage(m.From); err != nil {
					return &Error{Pos: at, Err: err}
				} else if ok {
					s.refs = append(s.refs, stageRef{index: j, what: "mount", name: m.From, at: at})
				}
			}
		}
	}
	for _, r := range s.refs {
		if !slices.Contains(s.Deps, r.index) {
			s.Deps = append(s.Deps, r.index)
		}
	}
	slices.Sort(s.Deps)
	return nil
}

// lookupStage resolves a --from value: a stage name (case-insensitive), a
// stage index, or (ok == false) an image reference.
func (p *Plan) lookupStage(name string) (int, bool, error) {
	if j, ok := p.names[strings.ToLower(name)]; ok {
		return j, true, nil
	}
	if n, err := strconv.Atoi(name); err == nil && isDigits(name) {
		if n < 0 || n >= len(p.all) {
			return 0, false, fmt.Errorf("invalid stage index %d", n)
		}
		return n, true, nil
	}
	return 0, false, nil
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

func (p *Plan) resolveTarget(target string) (*Stage, error) {
	if target == "" {
		return p.all[len(p.all)-1], nil
	}
	if j, ok := p.names[strings.ToLower(target)]; ok {
		return p.all[j], nil
	}
	if n, err := strconv.Atoi(target); err == nil && isDigits(target) && n < len(p.all) {
		return p.all[n], nil
	}
	return nil, &Error{Pos: Pos{File: p.file.Name}, Err: fmt.Errorf("target stage %q could not be found", target)}
}

// prune keeps the stages reachable from target, in dependency order (each
// after the stages it reads; otherwise in Dockerfile order), target last.
// FROM names an earlier stage only; COPY --from and RUN --mount from= may
// name a later one, as in BuildKit, unless that closes a cycle, which is
// named.
func (p *Plan) prune(target *Stage) error {
	const (
		unseen = iota
		active
		finished
	)
	state := map[int]int{}
	var path []string
	var visit func(s *Stage) error
	visit = func(s *Stage) error {
		if state[s.Index] == finished {
			return nil
		}
		state[s.Index] = active
		path = append(path, stageLabel(s))
		for _, r := range s.refs {
			if r.what == "from" && r.index >= s.Index || r.index == s.Index {
				return refError(s, r)
			}
			if state[r.index] == active {
				return errorf(r.at, "circular dependency detected on stage: %s", cycleText(path, stageLabel(p.all[r.index])))
			}
			if err := visit(p.all[r.index]); err != nil {
				return err
			}
		}
		path = path[:len(path)-1]
		state[s.Index] = finished
		return nil
	}
	if err := visit(target); err != nil {
		return err
	}
	// The reachable stages, each once all it reads is placed, earliest in
	// the file first (so a Dockerfile whose references all point back
	// keeps its order), the target last.
	placed := map[int]bool{}
	for len(placed) < len(state) {
		for _, s := range p.all {
			if state[s.Index] != finished || placed[s.Index] || (s == target && len(placed) < len(state)-1) {
				continue
			}
			ready := true
			for _, r := range s.refs {
				ready = ready && placed[r.index]
			}
			if ready {
				placed[s.Index] = true
				p.Stages = append(p.Stages, s)
				break
			}
		}
	}
	return nil
}

func stageLabel(s *Stage) string {
	if s.Name != "" {
		return s.Name
	}
	return "stage-" + strconv.Itoa(s.Index)
}

// cycleText is the cycle from its first stage on path back to it.
func cycleText(path []string, back string) string {
	for i, n := range path {
		if n == back {
			return strings.Join(append(slices.Clone(path[i:]), back), " -> ")
		}
	}
	return back
}

func refError(s *Stage, r stageRef) error {
	cur := s.Name
	if cur == "" {
		cur = "stage-" + strconv.Itoa(s.Index)
	}
	if r.index == s.Index {
		return errorf(r.at, "circular dependency detected on stage: %s", cur)
	}
	if r.what == "mount" {
		return errorf(r.at, "cannot mount from stage %q, stage needs to be defined before current command", r.name)
	}
	return errorf(r.at, "cannot copy from stage %q, it needs to be defined before current stage %q", r.name, cur)
}

// unusedArgs lists build args that no ARG in the file declares. Like
// Docker's warning it ignores the predefined proxy and platform args.
func (f *File) unusedArgs(buildArgs map[string]string, declared map[string]bool) []string {
	for _, s := range f.stages {
		for _, c := range s.st.Commands {
			if a, ok := c.(*instructions.ArgCommand); ok {
				for _, kv := range a.Args {
					declared[kv.Key] = true
				}
			}
		}
	}
	var out []string
	for k := range buildArgs {
		if !declared[k] && !builtinArgs[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// FirstRun is the position of the stage's first RUN instruction (its own,
// or an ONBUILD RUN of a parent stage of this Dockerfile); false when the
// stage runs nothing. Triggers of a base image are only known once it is
// resolved: the executor checks those.
func (s *Stage) FirstRun(p *Plan) (Pos, bool) {
	for _, c := range s.src.st.Commands {
		if _, ok := c.(*instructions.RunCommand); ok {
			return p.file.pos(max(rangeLine(c.Location()), s.At.Line)), true
		}
	}
	if s.Base.Stage >= 0 {
		for _, c := range p.all[s.Base.Stage].src.st.Commands {
			if ob, ok := c.(*instructions.OnbuildCommand); ok && strings.HasPrefix(strings.ToUpper(strings.TrimSpace(ob.Expression)), "RUN") {
				return s.At, true
			}
		}
	}
	return Pos{}, false
}

// SimilarStage is the stage name closest to name (at most two edits
// away, and not name itself), "" when none is: a COPY --from=bulid is
// most likely a typo of stage build, not an image called bulid.
func (p *Plan) SimilarStage(name string) string {
	name = strings.ToLower(name)
	if strings.ContainsAny(name, "/:@.") {
		return "" // an image reference, written as one
	}
	best, bestD := "", 3
	for n := range p.names {
		if d := editDistance(n, name); d > 0 && (d < bestD || d == bestD && n < best) {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
