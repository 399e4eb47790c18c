package dockerfile

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/moby/buildkit/frontend/dockerfile/command"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// File is a parsed Dockerfile. It is immutable after Parse and may be
// planned any number of times, concurrently.
type File struct {
	Name     string
	Warnings []Warning // parser warnings and linter findings, sorted by line

	escape   rune
	lintCfg  linter.Config // from "# check=", without a Warn func
	metaArgs []instructions.ArgCommand
	stages   []*fileStage
}

// Warning is a non-fatal finding. Rule is the BuildKit linter rule name
// (e.g. "StageNameCasing"), or "" for parser warnings.
type Warning struct {
	Rule, Msg string
	At        Pos
}

func (w Warning) String() string {
	if w.Rule == "" {
		return w.At.String() + ": " + w.Msg
	}
	return w.At.String() + ": " + w.Rule + ": " + w.Msg
}

// fileStage keeps both views of one stage: the typed instructions (read only,
// used by Plan for references) and the AST nodes that Lower re-parses,
// because BuildKit's Expand mutates commands in place.
type fileStage struct {
	st    instructions.Stage
	nodes []*parser.Node // the stage's instructions after FROM
	at    Pos
}

// Parse reads one Dockerfile. name is used only in positions.
func Parse(r io.Reader, name string) (*File, error) {
	if name == "" {
		name = "Dockerfile"
	}
	top := Pos{File: name, Line: 1}
	dt, err := io.ReadAll(io.LimitReader(r, MaxDockerfileSize+1))
	if err != nil {
		return nil, &Error{Pos: Pos{File: name}, Err: fmt.Errorf("reading: %w", err)}
	}
	if len(dt) > MaxDockerfileSize {
		return nil, &Error{Pos: Pos{File: name}, Err: fmt.Errorf("the Dockerfile is larger than %s: %w", mib(MaxDockerfileSize), ErrTooLarge)}
	}
	if len(bytes.TrimSpace(dt)) == 0 {
		return nil, errorf(top, "the Dockerfile cannot be empty")
	}
	f := &File{Name: name}
	if err := checkText(dt, f); err != nil {
		return nil, err
	}

	// "# check=" configures the linter for the whole file; comments right
	// above an instruction may refine it (BuildKit merges those itself).
	checkStr, _, checkLoc, _ := parser.ParseDirective("check", dt)
	cfg, err := linter.ParseLintOptions(checkStr)
	if err != nil {
		return nil, errorf(f.pos(rangeLine(checkLoc)), "failed to parse check options: %w", err)
	}
	f.lintCfg = *cfg
	cfg.Warn = f.collect
	lint := linter.New(cfg)

	if syntax, _, loc, ok := parser.DetectSyntax(dt); ok && !builtinSyntax(syntax) {
		f.Warnings = append(f.Warnings, Warning{
			At:  f.pos(rangeLine(loc)),
			Msg: fmt.Sprintf("syntax directive %q ignored: only the built-in Dockerfile frontend is supported", syntax),
		})
	}

	res, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		return nil, wrapErr(err, top)
	}
	f.escape = res.EscapeToken
	for _, w := range res.Warnings {
		loc := []parser.Range{}
		if w.Location != nil {
			loc = append(loc, *w.Location)
		}
		if w.URL == linter.RuleNoEmptyContinuation.URL {
			lint.Run(&linter.RuleNoEmptyContinuation, loc, linter.RuleNoEmptyContinuation.Format())
			continue
		}
		f.Warnings = append(f.Warnings, Warning{Msg: w.Short, At: f.pos(rangeLine(loc))})
	}

	dropRelabel(res.AST)
	stages, metaArgs, err := instructions.Parse(res.AST, lint)
	if err != nil {
		return nil, wrapErr(err, top)
	}
	if len(stages) == 0 {
		return nil, errorf(f.pos(res.AST.Children[0].StartLine), "dockerfile contains no stages to build: no FROM instruction")
	}
	f.metaArgs = metaArgs
	if err := f.groupNodes(res.AST, stages); err != nil {
		return nil, err
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	f.lintStages(lint)

	slices.SortStableFunc(f.Warnings, func(a, b Warning) int { return cmp.Compare(a.At.Line, b.At.Line) })
	if lint.ReturnAsError {
		if err := lintError(f.Warnings); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (f *File) pos(line int) Pos { return Pos{File: f.Name, Line: line} }

// collect is the linter's Warn function.
func (f *File) collect(rule, _, _, msg string, loc []parser.Range) {
	f.Warnings = append(f.Warnings, Warning{Rule: rule, Msg: msg, At: f.pos(rangeLine(loc))})
}

// lintError reports "# check=error=true" findings. BuildKit's own message
// iterates a map; ours is sorted so that it is stable.
func lintError(ws []Warning) error {
	var rules []string
	var at Pos
	for _, w := range ws {
		if w.Rule == "" || slices.Contains(rules, w.Rule) {
			continue
		}
		if len(rules) == 0 {
			at = w.At
		}
		rules = append(rules, w.Rule)
	}
	if len(rules) == 0 {
		return nil
	}
	slices.Sort(rules)
	return errorf(at, "lint violation found for rules: %s", strings.Join(rules, ", "))
}

// builtinSyntax accepts the official frontend images, which we implement
// natively; any other frontend would be ignored silently otherwise.
func builtinSyntax(ref string) bool {
	ref = strings.TrimPrefix(ref, "docker.io/")
	if i := strings.IndexAny(ref, ":@"); i >= 0 {
		ref = ref[:i]
	}
	return ref == "docker/dockerfile" || ref == "docker/dockerfile-upstream"
}

// groupNodes splits the AST children by FROM so that each stage keeps the
// nodes Lower re-parses. instructions.Parse already validated the shape.
func (f *File) groupNodes(ast *parser.Node, stages []instructions.Stage) error {
	var cur *fileStage
	for _, n := range ast.Children {
		if strings.EqualFold(n.Value, command.From) {
			i := len(f.stages)
			if i >= len(stages) {
				return errorf(f.pos(n.StartLine), "internal error: more FROM nodes than stages")
			}
			cur = &fileStage{st: stages[i], at: f.pos(n.StartLine)}
			f.stages = append(f.stages, cur)
			continue
		}
		if cur != nil {
			cur.nodes = append(cur.nodes, n)
		}
	}
	if len(f.stages) != len(stages) {
		return errorf(f.pos(1), "internal error: %d FROM nodes for %d stages", len(f.stages), len(stages))
	}
	return nil
}

// validate performs the static checks BuildKit does before dispatch.
func (f *File) validate() error {
	for _, s := range f.stages {
		for _, c := range s.st.Commands {
			at := f.pos(rangeLine(c.Location()))
			switch c := c.(type) {
			case *instructions.RunCommand:
				if len(instructions.GetDevices(c)) > 0 {
					return errorf(at, "RUN --device is not supported")
				}
			}
		}
	}
	return nil
}

// checkText rejects NUL bytes and invalid UTF-8 outside comments. BuildKit's
// lexer (text/scanner without an error handler) would print complaints to
// stderr and carry on; such a Dockerfile is broken anyway, and this package
// must not write anywhere.
func checkText(dt []byte, f *File) error {
	for i, line := range bytes.Split(dt, []byte("\n")) {
		if bytes.IndexByte(line, 0) >= 0 {
			return errorf(f.pos(i+1), "invalid character NUL")
		}
		if !utf8.Valid(line) && !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			return errorf(f.pos(i+1), "invalid UTF-8 encoding")
		}
	}
	return nil
}

// dropRelabel removes the SELinux relabel options buildah takes in RUN
// --mount (z, Z, relabel=shared|private) and BuildKit's parser refuses:
// a buildah user's Dockerfile builds, and there is nothing to relabel
// where builder runs (the mounts are its own).
func dropRelabel(ast *parser.Node) {
	for _, n := range ast.Children {
		if !strings.EqualFold(n.Value, "run") {
			continue
		}
		for i, fl := range n.Flags {
			v, ok := strings.CutPrefix(fl, "--mount=")
			if !ok {
				continue
			}
			parts := strings.Split(v, ",")
			kept := parts[:0]
			for _, p := range parts {
				switch p {
				case "z", "Z", "relabel=shared", "relabel=private":
				default:
					kept = append(kept, p)
				}
			}
			n.Flags[i] = "--mount=" + strings.Join(kept, ",")
		}
	}
}
