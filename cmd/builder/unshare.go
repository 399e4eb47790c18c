package main

import (
	"os"
	"os/exec"

	"github.com/spf13/cobra"
)

// newUnshareCmd runs a command (default: the user's shell) inside the user
// namespace builder itself uses, like `buildah unshare`: files of the
// store owned by subordinate ids show as their container ids there.
func newUnshareCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:                "unshare [COMMAND [ARG...]]",
		Short:              "Run a command in builder's user namespace",
		DisableFlagParsing: true,
		Args:               cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				sh := os.Getenv("SHELL")
				if sh == "" {
					sh = "/bin/sh"
				}
				args = []string{sh}
			}
			c := exec.Command(args[0], args[1:]...)
			c.Stdin, c.Stdout, c.Stderr = g.stdin, g.stdout, g.stderr
			c.Env = append(os.Environ(), "BUILDER_UNSHARED=1")
			if err := c.Run(); err != nil {
				if ee, ok := err.(*exec.ExitError); ok {
					os.Exit(ee.ExitCode())
				}
				return err
			}
			return nil
		},
	}
}
