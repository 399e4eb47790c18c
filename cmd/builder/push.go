package main

import (
	"io"

	"github.com/builder-dev/builder/images"
	digest "github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
	"go.podman.io/storage/pkg/ioutils"
)

type pushOptions struct {
	reg        registryFlags
	comp       compressionFlags
	format     string
	digestfile string
	quiet      bool
}

func newPushCmd(g *globalOptions) *cobra.Command {
	o := &pushOptions{}
	cmd := &cobra.Command{
		Use:   "push [flags] IMAGE [DESTINATION]",
		Short: "Push an image from local storage to a registry or another destination",
		Long: "Push IMAGE from local storage to DESTINATION: docker://REF (a registry; the default,\n" +
			"also for a DESTINATION without transport), oci:DIR[:TAG], oci-archive:FILE[:TAG],\n" +
			"docker-archive:FILE[:REF] or containers-storage:NAME. Without DESTINATION, IMAGE's name\n" +
			"is the registry reference. Each layer is compressed at most once in its life: the\n" +
			"compressed blob is kept in the store and reused by every later push.",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(g, cmd, args, func(s *images.Store, src, dest string, po images.PushOptions) (digest.Digest, error) {
				return s.Push(cmd.Context(), src, dest, po)
			})
		},
	}
	f := cmd.Flags()
	o.reg.add(f, true, true)
	o.comp.add(f)
	f.StringVarP(&o.format, "format", "f", "", "manifest format: oci or docker (default: the image's own)")
	f.StringVar(&o.digestfile, "digestfile", "", "write the digest of the pushed manifest to this file")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "do not print progress")
	return cmd
}

// run pushes args[0] to args[1] (or to its own name) with push, then
// writes --digestfile; `push` and `manifest push` share it.
func (o *pushOptions) run(g *globalOptions, cmd *cobra.Command, args []string, push func(s *images.Store, src, dest string, po images.PushOptions) (digest.Digest, error)) error {
	dest := args[0]
	if len(args) == 2 {
		dest = args[1]
	}
	ro, err := o.reg.options()
	if err != nil {
		return err
	}
	var progress io.Writer = g.stderr
	if o.quiet {
		progress = nil
	}
	return g.withStore(func(s *images.Store) error {
		d, err := push(s, args[0], dest, images.PushOptions{
			Registry: ro, Compression: o.comp.options(), Format: o.format, Progress: progress,
		})
		if err != nil || o.digestfile == "" {
			return err
		}
		if err := ioutils.AtomicWriteFile(o.digestfile, []byte(d.String()), 0o644); err != nil {
			return usagef("--digestfile: %v", err)
		}
		return nil
	})
}
