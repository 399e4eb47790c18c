package main

import (
	"encoding/json"
	"fmt"

	"github.com/builder-dev/builder/build"
	"github.com/builder-dev/builder/images"
	"github.com/spf13/cobra"
)

func newInfoCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "Show the host, the store and what a build here would use",
		Long: "Show, as buildah info does, the host, the store and the id mappings, and what a build\n" +
			"here would use: the RUN isolation and its fallbacks, the snapshot driver, the RUN network,\n" +
			"the registered emulators. builder doctor says what is missing and how to fix it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withStore(func(s *images.Store) error {
				b, err := json.MarshalIndent(build.Info(s), "", "    ")
				if err != nil {
					return err
				}
				fmt.Fprintln(g.stdout, string(b))
				return nil
			})
		},
	}
}

func newDoctorCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check what builds need here; for each shortfall, its cost and its fix",
		Long: "Check what builds need in this environment (user namespace, id mapping, RUN isolation,\n" +
			"/proc, hostname, capabilities, snapshots, RUN network, emulators). Each check says ok,\n" +
			"warn or fail; each warn and fail says how to fix it in a Kubernetes pod and on a laptop.\n" +
			"Exits 1 when a check fails.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withStore(func(s *images.Store) error {
				failed := false
				for _, c := range build.Doctor(s) {
					fmt.Fprintf(g.stdout, "%-5s %-15s %s\n", c.Status, c.Name, c.Detail)
					if c.Pod != "" {
						fmt.Fprintf(g.stdout, "      %-15s pod: %s\n", "", c.Pod)
					}
					if c.Laptop != "" {
						fmt.Fprintf(g.stdout, "      %-15s laptop: %s\n", "", c.Laptop)
					}
					failed = failed || c.Status == "fail"
				}
				if failed {
					return &build.Failure{Err: fmt.Errorf("some checks failed")}
				}
				return nil
			})
		},
	}
}
