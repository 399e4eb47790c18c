package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"
	"unicode"

	"github.com/builder-dev/builder/images"
	"github.com/docker/go-units"
	"github.com/spf13/cobra"
	"go.podman.io/image/v5/docker/reference"
)

type imagesOptions struct {
	quiet   bool
	json    bool
	format  string
	noTrunc bool
	all     bool
	filters []string
}

func newImagesCmd(g *globalOptions) *cobra.Command {
	o := &imagesOptions{}
	cmd := &cobra.Command{
		Use:   "images [flags] [IMAGE...]",
		Short: "List images in local storage",
		Long: "List images in local storage, one row per name. With IMAGE arguments, list only those images.\n" +
			"--format takes \"json\" or a Go template over .Repository .Tag .ID .Digest .Created .CreatedAt .Size\n" +
			"(\"table ...\" adds a header and aligns the columns). --filter takes dangling=true|false,\n" +
			"reference=PATTERN, label=KEY[=VALUE], before=IMAGE, since=IMAGE, id=PREFIX (repeatable: all\n" +
			"must match). The per-platform images of manifest lists are shown with --all.",
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.json && o.format != "" && o.format != "json" {
				return usagef("--json and --format %q conflict", o.format)
			}
			return g.withStore(func(s *images.Store) error { return o.run(g.stdout, s, args) })
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.quiet, "quiet", "q", false, "print only image IDs")
	f.BoolVar(&o.json, "json", false, "print JSON")
	f.StringVar(&o.format, "format", "", `output format: "json" or a Go template`)
	f.BoolVar(&o.noTrunc, "no-trunc", false, "print full image IDs")
	f.BoolVarP(&o.all, "all", "a", false, "also show the per-platform images manifest lists name")
	f.StringArrayVarP(&o.filters, "filter", "f", nil, "show only images that match: dangling=, reference=, label=, before=, since=, id= (repeatable)")
	return cmd
}

// filter keeps the images that match every --filter (and, without --all,
// hides the per-platform images of manifest lists).
func (o *imagesOptions) filter(s *images.Store, list []images.Summary) ([]images.Summary, error) {
	inst, err := s.ListInstances()
	if err != nil {
		return nil, err
	}
	type pred func(im images.Summary) bool
	var preds []pred
	for _, f := range o.filters {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, usagef("--filter %q: want KEY=VALUE", f)
		}
		switch k {
		case "dangling":
			want, err := strconv.ParseBool(v)
			if err != nil {
				return nil, usagef("--filter %q: want true or false", f)
			}
			preds = append(preds, func(im images.Summary) bool { return (len(im.Names) == 0 && !inst[im.ID]) == want })
		case "reference":
			preds = append(preds, func(im images.Summary) bool {
				for _, n := range im.Names {
					repo, tag := splitName(n)
					for _, cand := range []string{n, repo, repo + ":" + tag, strings.TrimPrefix(repo, "localhost/"), strings.TrimPrefix(repo, "localhost/") + ":" + tag} {
						if m, _ := path.Match(v, cand); m {
							return true
						}
					}
				}
				return false
			})
		case "label":
			lk, lv, withValue := strings.Cut(v, "=")
			preds = append(preds, func(im images.Summary) bool {
				got, ok := s.Labels(im.ID)[lk]
				return ok && (!withValue || got == lv)
			})
		case "before", "since":
			ref, err := s.List(v)
			if err != nil || len(ref) == 0 {
				return nil, usagef("--filter %q: %v", f, err)
			}
			at := ref[0].Created
			before := k == "before"
			preds = append(preds, func(im images.Summary) bool {
				if before {
					return im.Created.Before(at)
				}
				return im.Created.After(at)
			})
		case "id":
			preds = append(preds, func(im images.Summary) bool { return strings.HasPrefix(im.ID, strings.TrimPrefix(v, "sha256:")) })
		default:
			return nil, usagef("--filter %q: unknown filter %q (want dangling, reference, label, before, since or id)", f, k)
		}
	}
	var out []images.Summary
	for _, im := range list {
		keep := o.all || !inst[im.ID] || len(im.Names) > 0
		for _, p := range preds {
			keep = keep && p(im)
		}
		if keep {
			out = append(out, im)
		}
	}
	return out, nil
}

// tableHeader finds the {{.Field}} actions of a table format.
var tableHeader = regexp.MustCompile(`\{\{\s*\.[A-Za-z]+\s*\}\}`)

// imageRow is one line of `images`: one name of one image.
type imageRow struct {
	Repository string
	Tag        string
	ID         string
	Digest     string
	Created    string // "2 hours ago"
	CreatedAt  time.Time
	Size       string // "5.12 MB"
}

// imageJSON is one image in `images --json`.
type imageJSON struct {
	ID       string    `json:"id"`
	Names    []string  `json:"names"`
	Digest   string    `json:"digest"`
	Created  time.Time `json:"created"`
	Size     int64     `json:"size"`
	ReadOnly bool      `json:"readonly"`
}

func (o *imagesOptions) run(w io.Writer, s *images.Store, args []string) error {
	list, err := s.List(args...)
	if err != nil {
		return err
	}
	if list, err = o.filter(s, list); err != nil {
		return err
	}
	switch {
	case o.json || o.format == "json":
		out := make([]imageJSON, len(list))
		for i, im := range list {
			names := im.Names
			if names == nil {
				names = []string{}
			}
			out[i] = imageJSON{ID: im.ID, Names: names, Digest: im.Digest.String(), Created: im.Created, Size: im.Size, ReadOnly: im.ReadOnly}
		}
		b, err := json.MarshalIndent(out, "", "    ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case o.quiet:
		for _, im := range list {
			if _, err := fmt.Fprintln(w, o.id(im.ID)); err != nil {
				return err
			}
		}
		return nil
	case o.format != "":
		format, table := strings.CutPrefix(o.format, "table ")
		format = strings.ReplaceAll(format, `\t`, "\t")
		tmpl, err := template.New("format").Parse(format)
		if err != nil {
			return usagef("--format: %v", err)
		}
		out := w
		var tw *tabwriter.Writer
		if table {
			tw = tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
			out = tw
			// The header: each field's name, upper case, in the template's place.
			fmt.Fprintln(tw, tableHeader.ReplaceAllStringFunc(format, func(f string) string {
				return strings.ToUpper(strings.Trim(f, "{}. "))
			}))
		}
		for _, r := range o.rows(list, time.Now()) {
			if err := tmpl.Execute(out, r); err != nil {
				return fmt.Errorf("--format: %w", err)
			}
			if _, err := fmt.Fprintln(out); err != nil {
				return err
			}
		}
		if tw != nil {
			return tw.Flush()
		}
		return nil
	default:
		tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
		fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
		for _, r := range o.rows(list, time.Now()) {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Repository, r.Tag, r.ID, r.Created, r.Size)
		}
		return tw.Flush()
	}
}

func (o *imagesOptions) id(id string) string {
	if o.noTrunc {
		return "sha256:" + id
	}
	return id[:min(12, len(id))]
}

// rows expands images into one row per name (one "<none>" row for an
// unnamed image).
func (o *imagesOptions) rows(list []images.Summary, now time.Time) []imageRow {
	var rows []imageRow
	for _, im := range list {
		base := imageRow{
			ID:        o.id(im.ID),
			Digest:    im.Digest.String(),
			Created:   humanAgo(now, im.Created),
			CreatedAt: im.Created,
			Size:      humanSize(im.Size),
		}
		if len(im.Names) == 0 {
			base.Repository, base.Tag = "<none>", "<none>"
			rows = append(rows, base)
		}
		for _, n := range im.Names {
			r := base
			r.Repository, r.Tag = splitName(n)
			rows = append(rows, r)
		}
	}
	return rows
}

// splitName splits a stored name into repository and tag ("<none>" for a
// digest-only name).
func splitName(name string) (repo, tag string) {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return name, "<none>"
	}
	tag = "<none>"
	if t, ok := named.(reference.Tagged); ok {
		tag = t.Tag()
	}
	return named.Name(), tag
}

// humanAgo renders the age of t like buildah and docker ("2 hours ago").
func humanAgo(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	if t.After(now) {
		return "In the future"
	}
	return units.HumanDuration(now.Sub(t)) + " ago"
}

// humanSize renders a byte count as podman does ("5.12 MB").
func humanSize(n int64) string {
	if n < 0 {
		return "unknown"
	}
	s := units.HumanSizeWithPrecision(float64(n), 3)
	i := strings.LastIndexFunc(s, unicode.IsDigit)
	return s[:i+1] + " " + s[i+1:]
}
