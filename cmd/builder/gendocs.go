package main

import (
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newGenDocsCmd writes the man pages, shell completions and the Markdown
// flag reference from the commands themselves (make install, make docs).
func newGenDocsCmd(g *globalOptions) *cobra.Command {
	var man, completions, markdown string
	cmd := &cobra.Command{
		Use:    "gen-docs",
		Short:  "Write man pages, shell completions and the flag reference",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			root := cmd.Root()
			root.DisableAutoGenTag = true
			if man != "" {
				if err := os.MkdirAll(man, 0o755); err != nil {
					return err
				}
				if err := doc.GenManTree(root, &doc.GenManHeader{Title: "BUILDER", Section: "1", Source: "builder"}, man); err != nil {
					return err
				}
			}
			if markdown != "" {
				if err := os.MkdirAll(markdown, 0o755); err != nil {
					return err
				}
				if err := doc.GenMarkdownTree(root, markdown); err != nil {
					return err
				}
			}
			if completions != "" {
				for name, gen := range map[string]func(string) error{
					"builder.bash": func(p string) error { return root.GenBashCompletionFileV2(p, true) },
					"_builder":     root.GenZshCompletionFile,
					"builder.fish": func(p string) error { return root.GenFishCompletionFile(p, true) },
				} {
					if err := os.MkdirAll(completions, 0o755); err != nil {
						return err
					}
					if err := gen(filepath.Join(completions, name)); err != nil {
						return err
					}
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&man, "man", "", "write man pages (section 1) to this directory")
	f.StringVar(&completions, "completions", "", "write bash, zsh and fish completions to this directory")
	f.StringVar(&markdown, "markdown", "", "write the Markdown flag reference to this directory")
	return cmd
}
