// Command builder is a rootless, daemonless OCI image builder. It turns
// flags into options of the build and images libraries and prints their
// results; the work is theirs.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/builder-dev/builder/build"
	"github.com/builder-dev/builder/images"
	"github.com/spf13/cobra"
)

// Exit codes, as DESIGN.md: 1 build failure, 2 usage error, 125 internal.
const (
	exitBuild    = 1
	exitUsage    = 2
	exitInternal = 125
)

// usageError marks errors caused by bad flags or arguments (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func main() {
	maybeReexec(os.Args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stopProfile := startProfile()
	startMemProfile()
	softMemoryLimit()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stopProfile()
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globalOptions{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "Error: %v\n", err)
	var ue usageError
	switch {
	case errors.As(err, &ue), images.IsOptionError(err), isCobraUsage(err):
		return exitUsage
	case build.IsFailure(err), images.IsUserError(err):
		return exitBuild
	default:
		return exitInternal
	}
}

func newRootCmd(g *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:           "builder",
		Short:         "Build OCI images from Dockerfiles, rootless and daemonless",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.setup()
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.Version = versionLine()
	root.SetVersionTemplate("{{.Version}}\n")
	g.addFlags(root)
	root.AddCommand(
		newBudCmd(g),
		newImagesCmd(g),
		newRmiCmd(g),
		newTagCmd(g),
		newInspectCmd(g),
		newVersionCmd(g),
		newInfoCmd(g),
		newDoctorCmd(g),
		newKanikoCmd(g),
		newGenDocsCmd(g),
		newUnshareCmd(g),
		newPushCmd(g),
		newPullCmd(g),
		newLoginCmd(g),
		newLogoutCmd(g),
		newPruneCmd(g),
		newCacheCmd(g),
		newManifestCmd(g),
	)
	return root
}
