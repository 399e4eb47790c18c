package main

import (
	"fmt"
	"io"

	"github.com/builder-dev/builder/images"
	"github.com/builder-dev/builder/platform"
	"github.com/spf13/cobra"
)

func newPullCmd(g *globalOptions) *cobra.Command {
	var reg registryFlags
	var plat, policy string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "pull [flags] IMAGE",
		Short: "Pull an image from a registry into local storage",
		Long: "Pull IMAGE (REGISTRY/NAME[:TAG|@DIGEST], or a short name resolved through registries.conf\n" +
			"aliases and unqualified-search registries) into local storage and print its ID. From an image\n" +
			"index, the manifest for --platform is pulled. Layers the store already has are not fetched.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ro, err := reg.options()
			if err != nil {
				return err
			}
			o := images.PullOptions{Registry: ro, Policy: policy, Progress: g.stderr}
			if plat != "" {
				p, err := platform.Parse(plat)
				if err != nil {
					return usagef("--platform: %v", err)
				}
				o.Platform = p
			}
			if quiet {
				o.Progress = io.Discard
			}
			return g.withStore(func(s *images.Store) error {
				id, err := s.Pull(cmd.Context(), args[0], o)
				if err == nil {
					fmt.Fprintln(g.stdout, id)
				}
				return err
			})
		},
	}
	f := cmd.Flags()
	reg.add(f, true, true)
	f.StringVar(&plat, "platform", "", "platform os/arch[/variant] to pull from an image index (default: this machine)")
	f.StringVar(&policy, "policy", "always", "pull policy: always, missing, never, newer")
	f.BoolVarP(&quiet, "quiet", "q", false, "do not print progress")
	return cmd
}
