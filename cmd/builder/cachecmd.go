package main

// builder prune and builder cache ls/du: the layer cache beside the store
// (<graphroot>/builder/cache, blobs in <graphroot>/builder/blobs).

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/builder-dev/builder/content"

	"github.com/builder-dev/builder/cache"
	"github.com/builder-dev/builder/executor"
	"github.com/builder-dev/builder/snapshot"
	"github.com/docker/go-units"
	digest "github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
	"go.podman.io/storage"
)

type cacheDirs struct{ index, blobs, snapshots string }

func cacheDirsOf(s storage.Store) cacheDirs {
	base := filepath.Join(s.GraphRoot(), "builder")
	return cacheDirs{index: filepath.Join(base, "cache"), blobs: filepath.Join(base, "blobs"), snapshots: filepath.Join(base, "snapshots")}
}

func newPruneCmd(g *globalOptions) *cobra.Command {
	var all bool
	var olderThan time.Duration
	var keep string
	cmd := &cobra.Command{
		Use:   "prune [flags]",
		Short: "Remove layer cache entries (by age and size) and the blobs only they used",
		Long: "Remove layer cache entries unused for longer than --older-than, then the least recently\n" +
			"used until the cache fits --keep-storage; --all removes every entry. Blobs no remaining\n" +
			"entry uses are deleted. Images in the store are not touched. Waits for running builds.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o := cache.PruneOptions{All: all, MaxAge: olderThan}
			if keep != "" {
				n, err := units.RAMInBytes(keep)
				if err != nil || n < 0 {
					return usagef("--keep-storage %q: want a size such as 10GB", keep)
				}
				o.MaxBytes = n
			}
			if !all && olderThan == 0 && o.MaxBytes == 0 {
				o.All = true // as `buildah prune`: no filter means everything
			}
			return g.withStore(func(s storage.Store) error {
				d := cacheDirsOf(s)
				blobs, err := content.OpenStore(d.blobs)
				if err != nil {
					return err
				}
				var trees snapshot.PruneResult
				o.Also = func(kept map[digest.Digest]bool) error {
					keep := func(d digest.Digest) bool { return kept[d] }
					if o.All {
						keep = nil
					}
					var err error
					trees, err = snapshot.Prune(d.snapshots, keep)
					return err
				}
				res, err := cache.Prune(cmd.Context(), d.index, blobs, o)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "removed %d cache entries, %d blobs and %d extracted layers, %s reclaimed\n",
					res.Entries, res.Blobs, trees.Trees, units.HumanSize(float64(res.Bytes+trees.Bytes)))
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&all, "all", "a", false, "remove every cache entry")
	f.DurationVar(&olderThan, "older-than", 0, "remove entries unused for longer than this (e.g. 168h)")
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
			return withIndex(g, func(x *cache.Index, _ *content.Store, _ cacheDirs) error {
				recs, err := x.List()
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
			return withIndex(g, func(x *cache.Index, b *content.Store, d cacheDirs) error {
				recs, err := x.List()
				if err != nil {
					return err
				}
				var used int64
				seen := map[string]bool{}
				for _, r := range recs {
					if r.Layer != nil && !seen[r.Layer.Digest.String()] {
						seen[r.Layer.Digest.String()] = true
						used += r.Layer.Size
					}
				}
				total, n, err := b.Size()
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "entries\t%d\nlayers\t%s (%d blobs)\nblob store\t%s (%d blobs)\nextracted layers\t%s\n",
					len(recs), units.HumanSize(float64(used)), len(seen), units.HumanSize(float64(total)), n,
					units.HumanSize(float64(snapshot.Size(d.snapshots))))
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
			ignore, err := loadIgnore(file, dir)
			if err != nil {
				return usageError{err}
			}
			d, n, err := executor.HashContext(cmd.Context(), dir, ignore)
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

func withIndex(g *globalOptions, fn func(*cache.Index, *content.Store, cacheDirs) error) error {
	return g.withStore(func(s storage.Store) error {
		d := cacheDirsOf(s)
		blobs, err := content.OpenStore(d.blobs)
		if err != nil {
			return err
		}
		x, err := cache.OpenIndex(d.index, blobs)
		if err != nil {
			return err
		}
		defer x.Close()
		return fn(x, blobs, d)
	})
}

func printEntries(w io.Writer, recs []cache.Record) error {
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
