package main

// builder prune and builder cache ls/du/hash-context: the layer cache
// beside the store.

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/builder-dev/builder/build"
	"github.com/builder-dev/builder/images"
	"github.com/docker/go-units"
	"github.com/spf13/cobra"
)

func newPruneCmd(g *globalOptions) *cobra.Command {
	var o build.PruneOptions
	var keep string
	cmd := &cobra.Command{
		Use:   "prune [flags]",
		Short: "Remove layer cache entries (by age and size) and the blobs only they used",
		Long: "Remove layer cache entries unused for longer than --older-than, then the least recently\n" +
			"used until the cache fits --keep-storage; --all removes every entry. Blobs no remaining\n" +
			"entry uses are deleted. Images in the store are not touched. Waits for running builds.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if keep != "" {
				n, err := units.RAMInBytes(keep)
				if err != nil || n < 0 {
					return usagef("--keep-storage %q: want a size such as 10GB", keep)
				}
				o.KeepBytes = n
			}
			return g.withStore(func(s *images.Store) error {
				res, err := build.Prune(cmd.Context(), s, o)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "removed %d cache entries, %d blobs and %d extracted layers, %s reclaimed\n",
					res.Entries, res.Blobs, res.Trees, units.HumanSize(float64(res.Bytes)))
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.All, "all", "a", false, "remove every cache entry")
	f.DurationVar(&o.OlderThan, "older-than", 0, "remove entries unused for longer than this (e.g. 168h)")
	f.StringVar(&keep, "keep-storage", "", "then remove the least recently used entries until the cache is at most this size (e.g. 5GB)")
	return cmd
}

func newCacheCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "Inspect the layer cache",
	}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List layer cache entries, most recently used first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withStore(func(s *images.Store) error {
				recs, err := build.CacheEntries(s)
				if err != nil {
					return err
				}
				return printEntries(g.stdout, recs)
			})
		},
	}
	du := &cobra.Command{
		Use:   "du",
		Short: "Show the disk use of the layer cache",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withStore(func(s *images.Store) error {
				u, err := build.Usage(s)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "entries\t%d\nlayers\t%s (%d blobs)\nblob store\t%s (%d blobs)\nextracted layers\t%s\n",
					u.Entries, units.HumanSize(float64(u.LayerBytes)), u.Layers, units.HumanSize(float64(u.BlobBytes)), u.Blobs,
					units.HumanSize(float64(u.TreeBytes)))
				return nil
			})
		},
	}
	var file string
	hash := &cobra.Command{
		Use:   "hash-context [CONTEXT]",
		Short: "Hash a build context as COPY . selects it (after .dockerignore), reading every file",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			d, n, err := build.HashContext(cmd.Context(), dir, file)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s\t%d entries\n", d, n)
			return nil
		},
	}
	hash.Flags().StringVarP(&file, "file", "f", "", "Dockerfile whose .dockerignore applies (default CONTEXT/Dockerfile)")
	cmd.AddCommand(ls, du, hash)
	return cmd
}

func printEntries(w io.Writer, recs []build.CacheEntry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tCREATED\tLAST USED\tSIZE\tSTEP")
	for _, r := range recs {
		size := "0B (empty)"
		if r.Layer != nil {
			size = units.HumanSize(float64(r.Layer.Size))
		}
		step := strings.ReplaceAll(r.Step, "\n", " ")
		if len(step) > 60 {
			step = step[:57] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Key[:12], ago(r.Created), ago(r.LastUsed), size, step)
	}
	return tw.Flush()
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return units.HumanDuration(time.Since(t)) + " ago"
}
