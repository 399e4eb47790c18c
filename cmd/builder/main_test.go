package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNeedsStore(t *testing.T) {
	tests := []struct {
		args []string
		want bool
	}{
		{[]string{"images"}, true},
		{[]string{"--root", "/x", "bud", "."}, true},
		{[]string{"--log-level", "debug", "version"}, false},
		{[]string{"login", "reg"}, false},
		{[]string{"bud", "--help"}, false},
		{[]string{}, false},
		{[]string{"--", "images"}, false},
	}
	for _, tc := range tests {
		if got := needsStore(tc.args); got != tc.want {
			t.Errorf("needsStore(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}

func TestLogLevelArg(t *testing.T) {
	tests := []struct {
		args []string
		want slog.Level
		ok   bool
	}{
		{[]string{"--log-level", "debug", "images"}, slog.LevelDebug, true},
		{[]string{"--log-level=error"}, slog.LevelError, true},
		{[]string{"--log-level=bogus"}, 0, false},
		{[]string{"images", "--", "--log-level", "debug"}, 0, false},
		{[]string{"images"}, 0, false},
	}
	for _, tc := range tests {
		got, ok := logLevelArg(tc.args)
		if got != tc.want || ok != tc.ok {
			t.Errorf("logLevelArg(%q) = %v %v", tc.args, got, ok)
		}
	}
}

// Bad flags are usage errors (exit 2), caught before any store is opened.
func TestUsageExitCodes(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"bud", "--platform", "linux/amd46", t.TempDir()}, `unknown architecture "amd46"`},
		{[]string{"bud", "--output", "type=zip,dest=x", t.TempDir()}, "unknown type"},
		{[]string{"bud", "--network", "bridge", t.TempDir()}, "want private (the default), host or none"},
		{[]string{"bud", "--secret", "id=x,bogus=1", t.TempDir()}, "unknown key"},
		{[]string{"bud", "/no/such/context"}, "is not a directory"},
		{[]string{"bud", "--bogus"}, "unknown flag"},
		{[]string{"--log-level", "loud", "version"}, "unknown level"},
	}
	for _, tc := range tests {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tc.args, strings.NewReader(""), &out, &errOut)
		if code != exitUsage || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, code, errOut.String(), exitUsage, tc.want)
		}
	}
}

// The committed flag reference (docs/reference) is what gen-docs writes
// from the commands: a flag added without `make docs` fails here.
func TestReferenceUpToDate(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"gen-docs", "--markdown", dir}, nil, &out, &errb); code != 0 {
		t.Fatalf("gen-docs: %d %s", code, errb.String())
	}
	want, _ := filepath.Glob(filepath.Join("..", "..", "docs", "reference", "*.md"))
	got, _ := filepath.Glob(filepath.Join(dir, "*.md"))
	if len(want) != len(got) {
		t.Fatalf("docs/reference has %d pages, the commands make %d: run make docs", len(want), len(got))
	}
	for _, g := range got {
		a, _ := os.ReadFile(g)
		b, _ := os.ReadFile(filepath.Join("..", "..", "docs", "reference", filepath.Base(g)))
		if !bytes.Equal(a, b) {
			t.Errorf("docs/reference/%s is stale: run make docs", filepath.Base(g))
		}
	}
}

// make install's man pages and completions come from gen-docs.
func TestGenDocsManAndCompletions(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"gen-docs", "--man", dir + "/man", "--completions", dir + "/c"}, nil, &out, &errb); code != 0 {
		t.Fatalf("gen-docs: %d %s", code, errb.String())
	}
	for _, f := range []string{"man/builder.1", "man/builder-bud.1", "man/builder-manifest-push.1", "c/builder.bash", "c/_builder", "c/builder.fish"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || len(b) == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "man/builder-bud.1")); !bytes.Contains(b, []byte("platform")) {
		t.Error("the bud man page does not document its flags")
	}
}
