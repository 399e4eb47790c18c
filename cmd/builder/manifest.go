package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/builder-dev/builder/images"
	digest "github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
)

// newManifestCmd is `builder manifest`: buildah's manifest commands over
// the local store's lists (kept as podman and buildah keep them).
func newManifestCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "manifest",
		Short: "Create, change, inspect and push manifest lists and image indexes",
		Long: "Manifest lists (OCI image indexes or Docker manifest lists) in local storage, kept as\n" +
			"podman and buildah keep them: each tool reads and changes the others' lists.",
		Example: "  builder manifest create localhost/list\n" +
			"  builder manifest add localhost/list localhost/image\n" +
			"  builder manifest add --arch arm64 localhost/list localhost/image-arm64\n" +
			"  builder manifest inspect localhost/list\n" +
			"  builder manifest push localhost/list registry.example.com/app:v1\n" +
			"  builder manifest remove localhost/list sha256:entryManifestDigest\n" +
			"  builder manifest rm localhost/list",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown manifest command %q (want create, add, remove, inspect, push or rm)", args[0])
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(
		newManifestCreateCmd(g),
		newManifestAddCmd(g),
		newManifestRemoveCmd(g),
		newManifestInspectCmd(g),
		newManifestPushCmd(g),
		newManifestRmCmd(g),
	)
	return cmd
}

func newManifestCreateCmd(g *globalOptions) *cobra.Command {
	var (
		o   images.CreateListOptions
		reg registryFlags
	)
	cmd := &cobra.Command{
		Use:   "create [flags] LIST [IMAGE...]",
		Short: "Create a manifest list or image index",
		Long: "Create the manifest list LIST in local storage, with the IMAGEs in it, and print its ID.\n" +
			"An IMAGE is a local image or a reference such as docker://REF (a name that is not local\n" +
			"is looked up in a registry); an IMAGE that is itself a list adds its image for this\n" +
			"machine, or every one with --all. A name in use is an error unless --amend is given\n" +
			"and it names a list, which then gets the IMAGEs.",
		Example: "  builder manifest create mylist:v1.11\n" +
			"  builder manifest create mylist:v1.11 arch-specific-image-to-add\n" +
			"  builder manifest create --all mylist:v1.11 docker://quay.io/team/app:v1.11",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ro, err := reg.options()
			if err != nil {
				return err
			}
			o.Registry, o.Add = ro, args[1:]
			return g.withStore(func(s *images.Store) error {
				id, err := s.CreateList(cmd.Context(), args[0], o)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(g.stdout, id)
				return err
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.All, "all", false, "add all of the lists' images if the images to add are lists")
	f.BoolVar(&o.Amend, "amend", false, "modify an existing list if one with the desired name already exists")
	f.StringVarP(&o.Format, "format", "f", "", "type of a new list: oci (an OCI image index, the default) or docker (a Docker manifest list)")
	reg.add(f, true, false)
	return cmd
}

type manifestAddOptions struct {
	opts        images.AddOptions
	annotations []string
	reg         registryFlags
}

func newManifestAddCmd(g *globalOptions) *cobra.Command {
	o := &manifestAddOptions{}
	cmd := &cobra.Command{
		Use:   "add [flags] LIST IMAGE",
		Short: "Add an image to a manifest list or image index",
		Long: "Add IMAGE to the local list LIST and print \"LISTID: DIGEST\", DIGEST being the manifest\n" +
			"digest the list names the image by. IMAGE is a local image or a reference such as\n" +
			"docker://REF or oci:DIR[:TAG] (a name that is not local is looked up in a registry;\n" +
			"only its manifest and config are read, and the list records where it is). An IMAGE\n" +
			"that is itself a list adds its image for this machine (or for --os/--arch), or every\n" +
			"one with --all. --arch, --os, --variant, --os-version, --os-features and --features\n" +
			"replace what the image's config says in the list entry; --annotation sets annotations\n" +
			"on it (OCI indexes only). An image the list already has is replaced in place.",
		Example: "  builder manifest add mylist:v1.11 image:v1.11-amd64\n" +
			"  builder manifest add --arch arm64 --variant v8 mylist:v1.11 image:v1.11-arm64\n" +
			"  builder manifest add mylist:v1.11 docker://quay.io/team/app@sha256:...",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(o.annotations) > 0 {
				o.opts.Annotations = map[string]string{}
				for _, a := range o.annotations {
					k, v, ok := strings.Cut(a, "=")
					if !ok || k == "" {
						return usagef("--annotation %q: want KEY=VALUE", a)
					}
					o.opts.Annotations[k] = v
				}
			}
			ro, err := o.reg.options()
			if err != nil {
				return err
			}
			o.opts.Registry = ro
			return g.withStore(func(s *images.Store) error {
				id, d, err := s.AddToList(cmd.Context(), args[0], args[1], o.opts)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(g.stdout, "%s: %s\n", id, d)
				return err
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.opts.All, "all", false, "add all of the list's images if the image is a list")
	f.StringArrayVar(&o.annotations, "annotation", nil, "set an annotation KEY=VALUE for the specified image (repeatable)")
	f.StringVar(&o.opts.Arch, "arch", "", "override the architecture of the specified image")
	f.StringVar(&o.opts.OS, "os", "", "override the OS of the specified image")
	f.StringVar(&o.opts.Variant, "variant", "", "override the variant of the specified image")
	f.StringVar(&o.opts.OSVersion, "os-version", "", "override the OS version of the specified image")
	f.StringSliceVar(&o.opts.OSFeatures, "os-features", nil, "override the OS features of the specified image")
	f.StringSliceVar(&o.opts.Features, "features", nil, "override the features of the specified image")
	o.reg.add(f, true, false)
	return cmd
}

func newManifestRemoveCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "remove LIST DIGEST",
		Short: "Remove an entry from a manifest list or image index",
		Long: "Remove the image whose manifest digest is DIGEST from the local list LIST (the image\n" +
			"itself stays) and print \"LISTID: DIGEST\".",
		Example: "  builder manifest remove mylist:v1.11 sha256:15352d97781ffdf357bf3459c037be3efac4133dc9070c2dce7eca7c05c3e736",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withStore(func(s *images.Store) error {
				id, err := s.RemoveFromList(args[0], digest.Digest(args[1]))
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(g.stdout, "%s: %s\n", id, args[1])
				return err
			})
		},
	}
}

func newManifestInspectCmd(g *globalOptions) *cobra.Command {
	var reg registryFlags
	cmd := &cobra.Command{
		Use:   "inspect [flags] LIST",
		Short: "Display the contents of a manifest list or image index",
		Long: "Print the manifest list LIST as JSON: a local list as it is stored, else a registry's\n" +
			"(docker://REF, or a name with a registry host that is no local list) or another\n" +
			"transport's (oci:DIR[:TAG], oci-archive:FILE[:TAG]).",
		Example: "  builder manifest inspect mylist:v1.11\n" +
			"  builder manifest inspect docker://quay.io/team/app:v1.11",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ro, err := reg.options()
			if err != nil {
				return err
			}
			return g.withStore(func(s *images.Store) error {
				raw, err := s.InspectList(cmd.Context(), args[0], ro)
				if err != nil {
					return err
				}
				return printIndented(g.stdout, raw)
			})
		},
	}
	reg.add(cmd.Flags(), true, false)
	return cmd
}

// printIndented prints JSON indented as buildah prints lists.
func printIndented(w io.Writer, raw []byte) error {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "    "); err != nil {
		return fmt.Errorf("rendering manifest list: %w", err)
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

type manifestPushOptions struct {
	pushOptions
	all bool
	rm  bool
}

func newManifestPushCmd(g *globalOptions) *cobra.Command {
	o := &manifestPushOptions{}
	cmd := &cobra.Command{
		Use:   "push [flags] LIST [DESTINATION]",
		Short: "Push a manifest list or image index to a registry or another destination",
		Long: "Push the local list LIST to DESTINATION: docker://REF (a registry; the default, also for a\n" +
			"DESTINATION without transport and, without DESTINATION, LIST's name), oci:DIR[:TAG] or\n" +
			"oci-archive:FILE[:TAG]. Every image of the list is pushed first (by digest), the list\n" +
			"last, so a destination never names a list whose images are not all there. Local images\n" +
			"are compressed for the push (each layer once in its life), so the list written names\n" +
			"other manifest digests than the local one. --all=false pushes the list alone, as stored:\n" +
			"its images must be at the destination already. --rm removes the local list (not its\n" +
			"images) after a successful push.",
		Example: "  builder manifest push mylist:v1.11 registry.example.com/app:v1.11\n" +
			"  builder manifest push --rm --format docker mylist:v1.11 docker://registry.example.com/app:v1.11\n" +
			"  builder manifest push mylist:v1.11 oci:/tmp/layout:v1.11",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(g, cmd, args, func(s *images.Store, src, dest string, po images.PushOptions) (digest.Digest, error) {
				return s.PushList(cmd.Context(), src, dest, images.PushListOptions{
					Registry: po.Registry, Compression: po.Compression, Format: po.Format,
					IndexOnly: !o.all, Remove: o.rm, Progress: po.Progress,
				})
			})
		},
	}
	f := cmd.Flags()
	o.reg.add(f, true, true)
	o.comp.add(f)
	f.BoolVar(&o.all, "all", true, "also push the images in the list (--all=false: the list alone)")
	f.BoolVar(&o.rm, "rm", false, "remove the manifest list if push succeeds")
	f.StringVarP(&o.format, "format", "f", "", "manifest type (oci, or docker/v2s2) of the list and its images (default: the list's own)")
	f.StringVar(&o.digestfile, "digestfile", "", "after copying the list, write the digest of the list written to this file")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "do not print progress")
	return cmd
}

func newManifestRmCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "rm LIST...",
		Short: "Remove manifest lists or image indexes from local storage",
		Long: "Remove each LIST from local storage (only the list: its images stay), printing the names\n" +
			"untagged and the ID removed, as buildah does. One of several names of a list is only\n" +
			"untagged. A name of an image that is not a list is an error, and the image stays; the\n" +
			"other LISTs are still removed.",
		Example: "  builder manifest rm mylist:v1.11",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withStore(func(s *images.Store) error {
				var errs []error
				for _, name := range args {
					r, err := s.RemoveList(name)
					if err != nil {
						errs = append(errs, err)
						continue
					}
					for _, n := range r.Untagged {
						fmt.Fprintf(g.stdout, "untagged: %s\n", n)
					}
					if r.Deleted != "" {
						fmt.Fprintln(g.stdout, r.Deleted)
					}
				}
				return errors.Join(errs...)
			})
		},
	}
}
