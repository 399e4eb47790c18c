package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/builder-dev/builder/images"
	"github.com/spf13/cobra"
)

type rmiOptions struct {
	force bool
	all   bool
	prune bool
}

func newRmiCmd(g *globalOptions) *cobra.Command {
	o := &rmiOptions{}
	cmd := &cobra.Command{
		Use:   "rmi [flags] IMAGE...",
		Short: "Remove local images",
		Long: "Remove local images. Naming one of several names of an image only removes that name;\n" +
			"otherwise the image and its unused layers are deleted. --force also deletes an image\n" +
			"by ID when it has several names, and removes containers that use it.",
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case (o.all || o.prune) && len(args) > 0:
				return usagef("--all and --prune take no IMAGE arguments")
			case !o.all && !o.prune && len(args) == 0:
				return usagef("rmi requires at least 1 IMAGE argument (or --all, or --prune)")
			}
			return g.withStore(func(s *images.Store) error { return o.run(g.stdout, s, args) })
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.force, "force", "f", false, "remove the image even if it has several names or containers use it")
	f.BoolVarP(&o.all, "all", "a", false, "remove all images")
	f.BoolVarP(&o.prune, "prune", "p", false, "remove dangling images: no name, and in no manifest list")
	return cmd
}

// run removes each image, printing what it did; it keeps going after a
// failure and returns every failure.
func (o *rmiOptions) run(w io.Writer, s *images.Store, args []string) error {
	force := o.force
	if o.prune {
		list, err := s.Dangling()
		if err != nil {
			return err
		}
		for _, im := range list {
			args = append(args, im.ID)
		}
	}
	if o.all {
		list, err := s.List()
		if err != nil {
			return err
		}
		for _, im := range list {
			args = append(args, im.ID)
		}
		force = true
	}
	var errs []error
	for _, a := range args {
		r, err := s.Remove(a, force)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, n := range r.Untagged {
			fmt.Fprintf(w, "Untagged: %s\n", n)
		}
		if r.Deleted != "" {
			fmt.Fprintf(w, "Deleted: %s\n", r.Deleted)
		}
	}
	return errors.Join(errs...)
}
