package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Bad manifest arguments are usage errors (exit 2), caught before any
// store is opened.
func TestManifestUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"manifest", "bogus"}, `unknown manifest command "bogus"`},
		{[]string{"manifest", "create"}, "requires at least 1 arg"},
		{[]string{"manifest", "add", "list"}, "accepts 2 arg"},
		{[]string{"manifest", "add", "--annotation", "novalue", "list", "img"}, "want KEY=VALUE"},
		{[]string{"manifest", "add", "--annotation", "=v", "list", "img"}, "want KEY=VALUE"},
		{[]string{"manifest", "remove", "list"}, "accepts 2 arg"},
		{[]string{"manifest", "inspect"}, "accepts 1 arg"},
		{[]string{"manifest", "push"}, "accepts between 1 and 2 arg"},
		{[]string{"manifest", "push", "--all=maybe", "list"}, "invalid argument"},
		{[]string{"manifest", "push", "--max-layer-size", "lots", "list"}, "--max-layer-size"},
		{[]string{"manifest", "rm"}, "requires at least 1 arg"},
	}
	for _, tc := range tests {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tc.args, strings.NewReader(""), &out, &errOut)
		if code != exitUsage || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, code, errOut.String(), exitUsage, tc.want)
		}
	}
}

func TestManifestNeedsStore(t *testing.T) {
	if !needsStore([]string{"manifest", "inspect", "x"}) || needsStore([]string{"manifest", "--help"}) {
		t.Error("manifest subcommands use the store; their help does not")
	}
}
