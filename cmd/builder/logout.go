package main

import (
	"fmt"

	"github.com/builder-dev/builder/registry"
	"github.com/spf13/cobra"
)

type logoutOptions struct {
	reg registryFlags
	all bool
}

func newLogoutCmd(g *globalOptions) *cobra.Command {
	o := &logoutOptions{}
	cmd := &cobra.Command{
		Use:   "logout [flags] REGISTRY | --all",
		Short: "Remove stored registry credentials",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.all == (len(args) == 1) {
				return usagef("logout: give either REGISTRY or --all")
			}
			sys, err := o.reg.options().SystemContext(nil, "")
			if err != nil {
				return usageError{err}
			}
			server := ""
			if len(args) == 1 {
				server = args[0]
			}
			if err := registry.Logout(sys, server, o.all); err != nil {
				return err
			}
			if o.all {
				fmt.Fprintln(g.stdout, "Removed login credentials for all registries")
			} else {
				fmt.Fprintf(g.stdout, "Removed login credentials for %s\n", server)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.reg.authFile, "authfile", "", "auth file (default: $REGISTRY_AUTH_FILE, else ${XDG_RUNTIME_DIR}/containers/auth.json)")
	f.BoolVarP(&o.all, "all", "a", false, "remove the credentials of every registry")
	return cmd
}
