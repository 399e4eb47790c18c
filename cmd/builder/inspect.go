package main

import (
	"encoding/json"
	"fmt"
	"text/template"

	"github.com/builder-dev/builder/images"
	"github.com/spf13/cobra"
)

func newInspectCmd(g *globalOptions) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [flags] IMAGE",
		Short: "Show a local image's metadata, manifest and config as JSON",
		Long: "Show a local image as JSON: Id, Names, Digest, Digests, Created, Size, TopLayer,\n" +
			"ManifestType, Manifest and Config (the parsed image config). --format applies a Go\n" +
			"template to that object instead, e.g. '{{.Config.Config.Cmd}}'.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var tmpl *template.Template
			if format != "" {
				var err error
				if tmpl, err = template.New("format").Parse(format); err != nil {
					return usagef("--format: %v", err)
				}
			}
			return g.withStore(func(s *images.Store) error {
				info, err := s.Inspect(args[0])
				if err != nil {
					return fmt.Errorf("inspect: %w", err)
				}
				if tmpl != nil {
					if err := tmpl.Execute(g.stdout, info); err != nil {
						return fmt.Errorf("--format: %w", err)
					}
					_, err := fmt.Fprintln(g.stdout)
					return err
				}
				b, err := json.MarshalIndent(info, "", "    ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(g.stdout, "%s\n", b)
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Go template applied to the inspect object")
	return cmd
}
