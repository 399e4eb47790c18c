package dockerfile

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// cleanErr keeps BuildKit's error chain (errors.As still finds
// *parser.LocationError and friends) while presenting a message without
// BuildKit's own "dockerfile parse error on line N:" prefix, which would
// duplicate the position our *Error already prints.
type cleanErr struct {
	msg   string
	cause error
}

func (e *cleanErr) Error() string { return e.msg }
func (e *cleanErr) Unwrap() error { return e.cause }

var linePrefix = regexp.MustCompile(`^dockerfile parse error on line \d+: `)

// errorf builds a positioned error from a format.
func errorf(at Pos, format string, args ...any) error {
	return &Error{Pos: at, Err: fmt.Errorf(format, args...)}
}

// wrapErr turns any error from BuildKit's front end (or our own) into an
// *Error. The line comes from the innermost *parser.LocationError when there
// is one, otherwise from fallback. An *Error is returned unchanged.
func wrapErr(err error, fallback Pos) error {
	if err == nil {
		return nil
	}
	var pe *Error
	if errors.As(err, &pe) {
		return err
	}
	at := fallback
	var le *parser.LocationError
	if errors.As(err, &le) {
		if line := firstLine(le.Locations); line > 0 {
			at.Line = line
		}
	}
	if at.Line <= 0 && fallback.Line > 0 {
		at.Line = fallback.Line
	}
	msg := linePrefix.ReplaceAllString(err.Error(), "")
	return &Error{Pos: at, Err: &cleanErr{msg: msg, cause: err}}
}

// firstLine is the start line of the first (innermost) location BuildKit
// attached; WithLocation appends outer locations after it.
func firstLine(locs [][]parser.Range) int {
	for _, l := range locs {
		for _, r := range l {
			if r.Start.Line > 0 {
				return r.Start.Line
			}
		}
	}
	return 0
}

// rangeLine is the first line of a BuildKit location, 0 if none.
func rangeLine(r []parser.Range) int {
	if len(r) == 0 {
		return 0
	}
	return r[0].Start.Line
}
