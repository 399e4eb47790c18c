package main

import (
	"fmt"

	"github.com/builder-dev/builder/images"
	"github.com/spf13/cobra"
)

func newTagCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "tag IMAGE NAME [NAME...]",
		Short: "Add names to a local image",
		Long: "Add names to a local image. Names are normalised as podman does:\n" +
			"\"app:v2\" becomes \"localhost/app:v2\", a missing tag is \"latest\".",
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withStore(func(s *images.Store) error {
				if _, err := s.Tag(args[0], args[1:]...); err != nil {
					return fmt.Errorf("tag %s: %w", args[0], err)
				}
				return nil
			})
		},
	}
}
