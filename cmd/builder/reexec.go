package main

import (
	"log/slog"
	"strings"

	"github.com/builder-dev/builder/build"
)

// noStoreCommands are the subcommands that never touch the store, so they
// run without entering a user namespace.
var noStoreCommands = map[string]bool{
	"version": true, "help": true, "completion": true, "gen-docs": true, "login": true, "logout": true,
	"__complete": true, "__completeNoDesc": true,
}

// globalValueFlags are the root's flags that take a separate value.
var globalValueFlags = map[string]bool{
	"--root": true, "--runroot": true, "--storage-driver": true,
	"--storage-opt": true, "--log-level": true,
}

// maybeReexec runs first in main: the library's re-exec handlers, then,
// for subcommands that use the store, the user namespace.
func maybeReexec(args []string) {
	build.Init()
	// Until the flags are parsed, honour --log-level for what the
	// namespace setup logs (e.g. missing subordinate ID ranges).
	if lvl, ok := logLevelArg(args[1:]); ok {
		build.SetLibraryLogLevel(lvl)
	} else {
		build.SetLibraryLogLevel(slog.LevelWarn)
	}
	if needsStore(args[1:]) {
		build.EnterUserNamespace(args)
	}
}

// needsStore reports whether the command line runs a subcommand that uses
// the store; help requests and the commands in noStoreCommands do not.
func needsStore(args []string) bool {
	sub := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if a == "-h" || a == "--help" {
			return false
		}
		if strings.HasPrefix(a, "-") {
			if globalValueFlags[a] && sub == "" {
				i++ // skip the flag's value
			}
			continue
		}
		if sub == "" {
			sub = a
		}
	}
	return sub != "" && !noStoreCommands[sub]
}

// logLevelArg finds --log-level in args.
func logLevelArg(args []string) (slog.Level, bool) {
	for i, a := range args {
		switch {
		case a == "--":
			return 0, false
		case a == "--log-level" && i+1 < len(args):
			return parseLogLevel(args[i+1])
		case strings.HasPrefix(a, "--log-level="):
			return parseLogLevel(strings.TrimPrefix(a, "--log-level="))
		}
	}
	return 0, false
}
