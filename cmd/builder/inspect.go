package main

import (
	"encoding/json"
	"fmt"
	"strings"
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
			"ManifestType, Manifest and Config (the parsed image config). --format json prints that\n" +
			"too; any other --format is a Go template over it that also knows docker's names (.Id,\n" +
			".RepoTags, .RepoDigests, .Architecture, .Os, .Author, .Config.Env, .Config.Cmd, ...) and\n" +
			"buildah's (.OCIv1.Config.Env, .Docker.Config.Cmd, .FromImageID, ...), e.g. '{{.Config.Env}}'.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var tmpl *template.Template
			if format != "" && format != "json" {
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
					if err := tmpl.Execute(g.stdout, templateData(info)); err != nil {
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

// templateData is what --format templates see: builder's inspect object
// with docker's and buildah's field names beside its own, so a template
// written for either works unchanged.
func templateData(info *images.Info) map[string]any {
	c := info.Config
	cc := c.Config
	config := map[string]any{
		// builder's own shape: .Config.Config.Cmd, .Config.Architecture, ...
		"Config": cc, "Architecture": c.Architecture, "OS": c.OS, "Os": c.OS, "Variant": c.Variant,
		"Created": c.Created, "Author": c.Author, "RootFS": c.RootFS, "History": c.History,
		// docker's container config, flattened: .Config.Env, .Config.Cmd, ...
		"Env": cc.Env, "Cmd": cc.Cmd, "Entrypoint": cc.Entrypoint, "Labels": cc.Labels,
		"WorkingDir": cc.WorkingDir, "User": cc.User, "ExposedPorts": cc.ExposedPorts,
		"Volumes": cc.Volumes, "StopSignal": cc.StopSignal, "OnBuild": cc.OnBuild, "Shell": cc.Shell,
		"Healthcheck": cc.Healthcheck, "ArgsEscaped": cc.ArgsEscaped,
	}
	oci := c.Image // its Config is shadowed by the Docker superset: fill it
	oci.Config = cc.ImageConfig
	var repoDigests []string
	for _, n := range info.Names {
		if i := strings.LastIndex(n, ":"); i > strings.LastIndex(n, "/") && info.Digest != "" {
			repoDigests = append(repoDigests, n[:i]+"@"+info.Digest.String())
		}
	}
	return map[string]any{
		"ID": info.ID, "Id": "sha256:" + info.ID, "Names": info.Names, "RepoTags": info.Names,
		"RepoDigests": repoDigests, "Digest": info.Digest, "Digests": info.Digests,
		"Created": info.Created, "Size": info.Size, "VirtualSize": info.Size, "TopLayer": info.TopLayer,
		"ManifestType": info.ManifestType, "Manifest": string(info.Manifest),
		"Architecture": c.Architecture, "Os": c.OS, "Author": c.Author, "Config": config,
		"RootFS": c.RootFS, "History": c.History,
		// buildah's: the OCI and Docker views of the config.
		"OCIv1": oci, "Docker": c, "FromImageID": info.ID, "FromImageDigest": info.Digest,
	}
}
