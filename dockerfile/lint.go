package dockerfile

import (
	"path"
	"regexp"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// The linter rules BuildKit runs in dockerfile2llb (which we do not import)
// and that can be decided from the text alone are re-implemented here, so
// that `# check=error=true` means the same as with docker build. Rules that
// need the base image (UndefinedVar, InvalidBaseImagePlatform) are skipped;
// a shell form CMD warns unless a SHELL was set in the stage or its parent
// stages, because the base image's SHELL is unknown at parse time.

var (
	secretKey  = regexp.MustCompile(`(?i)(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)`)
	secretSafe = regexp.MustCompile(`(?i)(?:_|^)(?:public|file|version)(?:_|$)`)
)

func (f *File) lintStages(lint *linter.Linter) {
	lintCasing(f.stages, lint)
	names := map[string]int{}
	type inherit struct{ workdir, shell bool }
	state := make([]inherit, len(f.stages))
	for i, s := range f.stages {
		if n := s.st.Name; n != "" {
			if n == "context" || n == "scratch" {
				lint.Run(&linter.RuleReservedStageName, s.st.Location, linter.RuleReservedStageName.Format(n))
			}
			if _, dup := names[n]; dup {
				lint.Run(&linter.RuleDuplicateStageName, s.st.Location, linter.RuleDuplicateStageName.Format(n))
			}
		}
		// A stage built FROM an earlier stage inherits its WORKDIR and SHELL.
		if j, ok := names[strings.ToLower(s.st.BaseName)]; ok {
			state[i] = state[j]
		}
		if s.st.Name != "" {
			names[s.st.Name] = i
		}
		var cmdAt, entryAt, healthAt []parser.Range
		for _, c := range s.st.Commands {
			l := lint.WithMergedConfigFromComments(c.Comments())
			switch c := c.(type) {
			case *instructions.CmdCommand:
				usedOnce(l, c, &cmdAt)
				jsonArgs(l, c.Name(), c.PrependShell, state[i].shell, c.Location())
			case *instructions.EntrypointCommand:
				usedOnce(l, c, &entryAt)
				jsonArgs(l, c.Name(), c.PrependShell, state[i].shell, c.Location())
			case *instructions.HealthCheckCommand:
				usedOnce(l, c, &healthAt)
			case *instructions.ShellCommand:
				state[i].shell = true
			case *instructions.WorkdirCommand:
				if !state[i].workdir && !path.IsAbs(c.Path) && !strings.HasPrefix(c.Path, "$") {
					l.Run(&linter.RuleWorkdirRelativePath, c.Location(), linter.RuleWorkdirRelativePath.Format(c.Path))
				}
				state[i].workdir = true
			case *instructions.EnvCommand:
				for _, kv := range c.Env {
					legacyKV(l, c.Name(), kv, c.Location())
					noSecret(l, "ENV", kv.Key, c.Location())
				}
			case *instructions.LabelCommand:
				for _, kv := range c.Labels {
					legacyKV(l, c.Name(), kv, c.Location())
				}
			case *instructions.ArgCommand:
				for _, kv := range c.Args {
					noSecret(l, "ARG", kv.Key, c.Location())
				}
			case *instructions.ExposeCommand:
				lintExpose(l, c)
			}
		}
	}
}

// lintCasing is ConsistentInstructionCasing: every keyword should follow the
// casing of the majority.
func lintCasing(stages []*fileStage, lint *linter.Linter) {
	consistent := func(s string) bool { return s == strings.ToLower(s) || s == strings.ToUpper(s) }
	var lower, upper int
	count := func(name string) {
		if !consistent(name) {
			return
		}
		if name == strings.ToLower(name) {
			lower++
		} else {
			upper++
		}
	}
	for _, s := range stages {
		count(s.st.OrigCmd)
		for _, c := range s.st.Commands {
			count(c.Name())
		}
	}
	majorityLower := lower > upper
	check := func(name string, loc []parser.Range) {
		want := ""
		if majorityLower && strings.ToLower(name) != name {
			want = "lowercase"
		} else if !majorityLower && strings.ToUpper(name) != name {
			want = "uppercase"
		}
		if want != "" {
			lint.Run(&linter.RuleConsistentInstructionCasing, loc, linter.RuleConsistentInstructionCasing.Format(name, want))
		}
	}
	for _, s := range stages {
		check(s.st.OrigCmd, s.st.Location)
		for _, c := range s.st.Commands {
			check(c.Name(), c.Location())
		}
	}
}

// usedOnce reports the earlier instruction, the one that will be ignored.
func usedOnce(l *linter.Linter, c instructions.Command, prev *[]parser.Range) {
	if *prev != nil {
		l.Run(&linter.RuleMultipleInstructionsDisallowed, *prev, linter.RuleMultipleInstructionsDisallowed.Format(c.Name()))
	}
	*prev = c.Location()
}

func jsonArgs(l *linter.Linter, name string, shellForm, shellSet bool, loc []parser.Range) {
	if shellForm && !shellSet {
		l.Run(&linter.RuleJSONArgsRecommended, loc, linter.RuleJSONArgsRecommended.Format(name))
	}
}

func legacyKV(l *linter.Linter, name string, kv instructions.KeyValuePair, loc []parser.Range) {
	if kv.NoDelim {
		l.Run(&linter.RuleLegacyKeyValueFormat, loc, linter.RuleLegacyKeyValueFormat.Format(name))
	}
}

func noSecret(l *linter.Linter, instruction, key string, loc []parser.Range) {
	if secretKey.MatchString(key) && !secretSafe.MatchString(key) {
		l.Run(&linter.RuleSecretsUsedInArgOrEnv, loc, linter.RuleSecretsUsedInArgOrEnv.Format(instruction, key))
	}
}

// lintExpose checks literal ports only; expanded ones are validated (as
// errors) by Lower.
func lintExpose(l *linter.Linter, c *instructions.ExposeCommand) {
	for _, p := range c.Ports {
		if strings.Contains(p, "$") {
			continue
		}
		sp, err := splitPort(p)
		if err != nil {
			continue
		}
		if sp.proto != strings.ToLower(sp.proto) {
			l.Run(&linter.RuleExposeProtoCasing, c.Location(), linter.RuleExposeProtoCasing.Format(p))
		}
		if sp.ip != "" || sp.host != "" {
			l.Run(&linter.RuleExposeInvalidFormat, c.Location(), linter.RuleExposeInvalidFormat.Format(p))
		}
	}
}
