package main

import (
	"context"
	"fmt"
	"io"

	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/registry"
	"github.com/spf13/cobra"
	"go.podman.io/storage"
)

type pullOptions struct {
	reg      registryFlags
	platform string
	policy   string
	quiet    bool
}

func newPullCmd(g *globalOptions) *cobra.Command {
	o := &pullOptions{}
	cmd := &cobra.Command{
		Use:   "pull [flags] IMAGE",
		Short: "Pull an image from a registry into local storage",
		Long: "Pull IMAGE (REGISTRY/NAME[:TAG|@DIGEST], or a short name resolved through registries.conf\n" +
			"aliases and unqualified-search registries) into local storage and print its ID. From an image\n" +
			"index, the manifest for --platform is pulled. Layers the store already has are not fetched.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withStore(func(s storage.Store) error { return o.run(cmd.Context(), g, s, args[0]) })
		},
	}
	f := cmd.Flags()
	o.reg.add(f, true, true)
	f.StringVar(&o.platform, "platform", "", "platform os/arch[/variant] to pull from an image index (default: this machine)")
	f.StringVar(&o.policy, "policy", "always", "pull policy: always, missing, never, newer")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "do not print progress")
	return cmd
}

func (o *pullOptions) run(ctx context.Context, g *globalOptions, s storage.Store, name string) error {
	plat, err := parsePlatform(o.platform)
	if err != nil {
		return usageError{err}
	}
	policy, err := image.ParsePullPolicy(o.policy)
	if err != nil {
		return usageError{err}
	}
	env, err := o.reg.env(g, s, nil)
	if err != nil {
		return err
	}
	var progress io.Writer = g.stderr
	if o.quiet {
		progress = nil
	}
	r := &image.Resolver{Store: s, Sys: env.sys, Log: g.log, Pull: policy, Puller: env.puller(s, progress, g)}
	defer r.Close()
	img, err := r.Resolve(ctx, name, plat)
	if err != nil {
		return err
	}
	id, err := img.ID()
	if err != nil {
		return err
	}
	fmt.Fprintln(g.stdout, id.Encoded())
	return nil
}

// puller is the registry puller of env for store s.
func (e *registryEnv) puller(s storage.Store, progress io.Writer, g *globalOptions) *registry.Puller {
	return &registry.Puller{Store: s, Sys: e.sys, Variants: e.variants, Retry: e.retry, Report: progress, Log: g.log}
}
