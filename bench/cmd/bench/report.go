package main

// Summary rows, ratios and the Markdown table.

import (
	"fmt"
	"math"
	"strings"
)

// measure is one row of the table per case.
type measure struct {
	key   string // summary key
	label string
	unit  string // s, MiB, MB
	src   string // measurement kind (cold, push, ...)
	get   func(m measurement) float64
}

var measures = []measure{
	{"cold", "cold build", "s", "cold", wall},
	{"cold_wiped", "cold build right after a store wipe", "s", "cold_wiped", wall},
	{"cold_jobs1", "cold build, builder --jobs 1", "s", "cold_jobs1", wall},
	{"warm", "warm rebuild (no change)", "s", "warm", wall},
	{"touch", "rebuild, one file touched", "s", "touch", wall},
	{"edit", "rebuild, one file edited", "s", "edit", wall},
	{"push", "push to local registry", "s", "push", wall},
	{"push_new", "push again, to a new repository", "s", "push_new", wall},
	{"ci", "CI flow (cold build + push)", "s", "ci", wall},
	{"ci_zstd", "CI flow with zstd", "s", "ci_zstd", wall},
	{"rss_cold", "peak RSS, cold build", "MiB", "cold", rss},
	{"rss_push", "peak RSS, push", "MiB", "push", rss},
	{"written_cold", "bytes written, cold build", "MB", "cold", written},
	{"store_cold", "store growth, cold build", "MB", "", nil},
}

func wall(m measurement) float64    { return m.Wall }
func rss(m measurement) float64     { return float64(m.MaxRSSKiB) / 1024 }
func written(m measurement) float64 { return float64(m.WriteBytes) / 1e6 }

func ptr(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// floorOf is the floor of a summary row (NaN: none).
//
//	cold build       tar of the context + one empty sandbox start per RUN + writing the image's own layers
//	warm, touched    tar of the context (reading it once is what noticing no change costs)
//	edited           tar of the context + a sandbox start per RUN the edit invalidates + writing the own layers
//	push             pgzip of the image's own layers (what a push must compress)
//	CI flow          cold floor + push floor
//	bytes written    uncompressed size of the image's own layers (what a store must hold once)
func floorOf(key string, f caseFloors, sandbox float64) float64 {
	switch key {
	case "cold", "cold_wiped", "cold_jobs1":
		return f.TarContext.Median + float64(f.Runs)*sandbox + f.WriteLayers.Median
	case "warm", "touch":
		return f.TarContext.Median
	case "edit":
		return f.TarContext.Median + float64(f.EditRuns)*sandbox + f.WriteLayers.Median
	case "push":
		return f.PgzipLayers.Median
	case "ci":
		return f.TarContext.Median + float64(f.Runs)*sandbox + f.WriteLayers.Median + f.PgzipLayers.Median
	case "ci_zstd":
		return f.TarContext.Median + float64(f.Runs)*sandbox + f.WriteLayers.Median + f.ZstdContext.Median
	case "written_cold", "store_cold":
		return float64(f.LayerBytes) / 1e6
	}
	return math.NaN()
}

func summarize(r *results) {
	sandbox := r.Sandbox.Median
	for _, name := range r.Order {
		c := r.Cases[name]
		c.Summary = map[string]summaryRow{}
		for _, m := range measures {
			row := summaryRow{Unit: m.unit}
			for _, tn := range []string{"builder", "buildah"} {
				tr := c.Tools[tn]
				if tr == nil {
					continue
				}
				var v []float64
				if m.key == "store_cold" {
					for _, n := range tr.StoreCold {
						v = append(v, float64(n)/1e6)
					}
				} else {
					for _, x := range tr.Measures[m.src] {
						v = append(v, m.get(x))
					}
				}
				if len(v) == 0 {
					continue
				}
				s := mkStat(v)
				if tn == "builder" {
					row.Builder = &s
				} else {
					row.Buildah = &s
				}
			}
			fl := floorOf(m.key, c.Floors, sandbox)
			row.Floor = ptr(fl)
			if row.Builder != nil && row.Buildah != nil && row.Buildah.Median > 0 {
				row.BuilderBuildah = ptr(row.Builder.Median / row.Buildah.Median)
			}
			if row.Builder != nil && row.Floor != nil && fl > 0 {
				row.BuilderFloor = ptr(row.Builder.Median / fl)
			}
			if row.Buildah != nil && row.Floor != nil && fl > 0 {
				row.BuildahFloor = ptr(row.Buildah.Median / fl)
			}
			c.Summary[m.key] = row
		}
	}
	// Per-RUN overhead: (run10 - meta) / 10, cold builds, medians.
	meta, run10 := r.Cases["meta"], r.Cases["run10"]
	if meta != nil && run10 != nil {
		per := map[string]float64{}
		for _, tn := range []string{"builder", "buildah"} {
			a, b := run10.Summary["cold"], meta.Summary["cold"]
			x, y := a.Builder, b.Builder
			if tn == "buildah" {
				x, y = a.Buildah, b.Buildah
			}
			if x != nil && y != nil {
				per[tn] = (x.Median - y.Median) / 10
			}
		}
		if len(per) == 2 {
			ratio := per["builder"] / per["buildah"]
			r.PerRun = map[string]any{"builder_s": per["builder"], "buildah_s": per["buildah"], "ratio": ratio,
				"floor_s": sandbox, "builder_over_floor": per["builder"] / sandbox}
			r.Acceptance["per_run_ratio_le_0.25"] = ratio <= 0.25
		}
	}
	// Peak memory of builder on copy-big, over every command it ran.
	ok := true
	if c := r.Cases["copy-big"]; c != nil && c.Tools["builder"] != nil {
		var peak int64
		for _, ms := range c.Tools["builder"].Measures {
			for _, m := range ms {
				peak = max(peak, m.MaxRSSKiB)
			}
		}
		mib := float64(peak) / 1024
		r.Acceptance["copy_big_builder_peak_rss_mib"] = mib
		r.Acceptance["copy_big_builder_peak_rss_under_256mib"] = mib < 256
		ok = ok && mib < 256
	}
	if v, found := r.Acceptance["per_run_ratio_le_0.25"]; found {
		ok = ok && v.(bool)
	}
	// The registry issue's figures, on copy-big. They are reported, not
	// part of "ok" (which gates the run itself).
	if c := r.Cases["copy-big"]; c != nil {
		if row := c.Summary["ci"]; row.BuilderBuildah != nil {
			r.Acceptance["copy_big_ci_ratio"] = *row.BuilderBuildah
			r.Acceptance["copy_big_ci_ratio_le_0.5"] = *row.BuilderBuildah <= 0.5
		}
		if row := c.Summary["push_new"]; row.BuilderBuildah != nil {
			r.Acceptance["copy_big_push_new_ratio"] = *row.BuilderBuildah
			r.Acceptance["copy_big_push_new_ratio_le_0.2"] = *row.BuilderBuildah <= 0.2
		}
		if z, g := c.Summary["ci_zstd"], c.Summary["ci"]; z.Builder != nil && g.Builder != nil && z.Builder.Median > 0 {
			sp := g.Builder.Median / z.Builder.Median
			r.Acceptance["copy_big_ci_zstd_speedup"] = sp
			r.Acceptance["copy_big_ci_zstd_speedup_ge_2"] = sp >= 2
		}
	}
	// The layer cache issue's figures: warm rebuilds against buildah's
	// (with --layers) and against hashing the context.
	warmOK := true
	var warmNotes []string
	for _, name := range r.Order {
		c := r.Cases[name]
		w := c.Summary["warm"]
		if w.Builder == nil || w.Buildah == nil {
			continue
		}
		limit := 0.2
		if name == "copy-many" {
			limit = 0.1
		}
		ratio := w.Builder.Median / w.Buildah.Median
		pass := ratio <= limit
		note := fmt.Sprintf("%s %.3f (≤ %.1f)", name, ratio, limit)
		if h := c.Floors.HashContext.Median; h > 0 {
			hr := w.Builder.Median / h
			pass = pass && hr <= 2
			note += fmt.Sprintf(", %.2f× hashing", hr)
		}
		if c.Platforms != nil {
			// The layer cache issue's limits were set for one-platform
			// builds; a multi-platform case's figures are shown, not gated
			// (its own issue's limit is on the cold build).
			note += " (not gated: multi-platform)"
		} else {
			warmOK = warmOK && pass
		}
		warmNotes = append(warmNotes, note)
	}
	if len(warmNotes) > 0 {
		r.Acceptance["warm_rebuild"] = strings.Join(warmNotes, "; ")
		r.Acceptance["warm_rebuild_ok"] = warmOK
	}
	// The multi-platform issue's figure: the cold build of the multiarch
	// list against buildah's (reported, not part of "ok", like the
	// registry issue's).
	if c := r.Cases["multiarch"]; c != nil {
		if row := c.Summary["cold"]; row.BuilderBuildah != nil {
			r.Acceptance["multiarch_ratio"] = *row.BuilderBuildah
			r.Acceptance["multiarch_ratio_le_0.5"] = *row.BuilderBuildah <= 0.5
		}
	}
	if c := r.Cases["copy-many"]; c != nil {
		if row := c.Summary["touch"]; row.BuilderBuildah != nil {
			r.Acceptance["copy_many_touch_ratio"] = *row.BuilderBuildah
			r.Acceptance["copy_many_touch_ratio_le_0.2"] = *row.BuilderBuildah <= 0.2
		}
	}
	summarizePerf2(r)
	summarizePod(r)
	r.Acceptance["ok"] = ok
}

// summarizePerf2 checks the second performance issue's limits (reported,
// not part of "ok", like the other issues' figures).
func summarizePerf2(r *results) {
	var notes []string
	pass := true
	check := func(label string, v *float64, limit float64) {
		if v == nil {
			return
		}
		ok := *v <= limit
		pass = pass && ok
		mark := ""
		if !ok {
			mark = " FAIL"
		}
		notes = append(notes, fmt.Sprintf("%s %.2f (≤ %.2g)%s", label, *v, limit, mark))
	}
	row := func(name, key string) summaryRow {
		if c := r.Cases[name]; c != nil {
			return c.Summary[key]
		}
		return summaryRow{}
	}
	for _, k := range []string{"cold", "cold_wiped"} {
		s := row("copy-many", k)
		check("copy-many "+k+"/floor", s.BuilderFloor, 2.5)
		check("copy-many "+k+"/buildah", s.BuilderBuildah, 0.3)
	}
	check("copy-many edit/buildah", row("copy-many", "edit").BuilderBuildah, 0.1)
	check("rm-whiteout cold/buildah", row("rm-whiteout", "cold").BuilderBuildah, 0.6)
	check("copy-big push/pgzip floor", row("copy-big", "push").BuilderFloor, 1.5)
	for _, name := range r.Order {
		check(name+" store/buildah", row(name, "store_cold").BuilderBuildah, 1.2)
	}
	if s := row("copy-many", "rss_cold"); s.Builder != nil && s.Buildah != nil {
		d := s.Builder.Median - s.Buildah.Median
		check("copy-many RSS over buildah's (MiB)", &d, 10)
	}
	if p := row("parallel", "cold"); p.Builder != nil {
		if j := row("parallel", "cold_jobs1"); j.Builder != nil && j.Builder.Median > 0 {
			v := p.Builder.Median / j.Builder.Median
			check("parallel/--jobs 1", &v, 0.6)
		}
		check("parallel/buildah --jobs 2", p.BuilderBuildah, 0.5)
	}
	// The physical floors the two tar/pgzip limits leave out, reported
	// beside them: creating the files once, and the registry's own work.
	var phys []string
	if c := r.Cases["copy-many"]; c != nil {
		f := c.Floors
		if fl := f.TarContext.Median + f.ExtractLayers.Median; fl > 0 {
			if s := c.Summary["cold"]; s.Builder != nil {
				phys = append(phys, fmt.Sprintf("copy-many: creating its files alone takes %.2f s (%.1fx the tar floor); cold build / (tar + create) %.2f",
					f.ExtractLayers.Median, f.ExtractLayers.Median/max(f.TarContext.Median, 1e-9), s.Builder.Median/fl))
			}
		}
		if w := f.ExtractAfterWipe.Median; w > 0 {
			if s := c.Summary["cold_wiped"]; s.Builder != nil && s.Buildah != nil {
				phys = append(phys, fmt.Sprintf("copy-many right after a wipe: creating its files alone takes %.2f s (0.3x buildah's cold build after a wipe is %.2f s); cold build after a wipe / (tar + create after a wipe) %.2f",
					w, 0.3*s.Buildah.Median, s.Builder.Median/(f.TarContext.Median+w)))
			}
		}
	}
	if c := r.Cases["copy-big"]; c != nil {
		f := c.Floors
		if s := c.Summary["push"]; s.Builder != nil && f.UploadLayers.Median > 0 {
			phys = append(phys, fmt.Sprintf("copy-big: uploading the compressed layers alone takes %.2f s (%.1fx the pgzip floor); push / (pgzip + upload) %.2f",
				f.UploadLayers.Median, f.UploadLayers.Median/max(f.PgzipLayers.Median, 1e-9), s.Builder.Median/(f.PgzipLayers.Median+f.UploadLayers.Median)))
		}
	}
	if len(phys) > 0 {
		r.Acceptance["perf2_physical_floors"] = strings.Join(phys, "; ")
	}
	if len(notes) > 0 {
		r.Acceptance["perf2"] = strings.Join(notes, "; ")
		r.Acceptance["perf2_ok"] = pass
	}
}

func fmtNum(v float64, unit string) string {
	switch {
	case unit == "MiB" || unit == "MB":
		if v >= 100 {
			return fmt.Sprintf("%.0f", v)
		}
		return fmt.Sprintf("%.1f", v)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func fmtStat(s *stat, unit string) string {
	if s == nil {
		return "n/a"
	}
	return fmtNum(s.Min, unit) + " / " + fmtNum(s.Median, unit)
}

func fmtRatio(p *float64) string {
	if p == nil {
		return "–"
	}
	v := *p
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func renderTable(r *results) string {
	var b strings.Builder
	m := r.Machine
	base := "an OCI layout on disk"
	if r.Config["base_source"] == "registry" {
		base = "the local registry"
	}
	fmt.Fprintf(&b, "builder bench — %v cores, %v, %.0f GiB, kernel %v, %v; %v; load average at start %v, at end %v; base image from %s; repeat %v (min / median)\n\n",
		m["cores"], m["cpu"], m["memory_gib"], m["kernel"], m["os"], m["date"], m["loadavg_start"], m["loadavg_end"], base, r.Config["repeat"])
	fmt.Fprintf(&b, "| case | measure | unit | builder | buildah | builder/buildah | floor | builder/floor |\n")
	fmt.Fprintf(&b, "|---|---|---|---:|---:|---:|---:|---:|\n")
	for _, name := range r.Order {
		c := r.Cases[name]
		for _, ms := range measures {
			row := c.Summary[ms.key]
			if row.Builder == nil && row.Buildah == nil {
				continue // a variant this case does not have
			}
			fl := "–"
			if row.Floor != nil {
				fl = fmtNum(*row.Floor, ms.unit)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", name, ms.label, ms.unit,
				fmtStat(row.Builder, ms.unit), fmtStat(row.Buildah, ms.unit), fmtRatio(row.BuilderBuildah), fl, fmtRatio(row.BuilderFloor))
		}
	}
	if r.PerRun != nil {
		fmt.Fprintf(&b, "\nPer-RUN overhead, (run10 − meta) / 10, cold medians: builder %.4f s, buildah %.4f s, builder/buildah %.3f (target ≤ 0.25), builder/floor %.2f (empty sandbox start %.4f s).\n",
			r.PerRun["builder_s"], r.PerRun["buildah_s"], r.PerRun["ratio"], r.PerRun["builder_over_floor"], r.Sandbox.Median)
	}
	for _, name := range r.Order {
		c := r.Cases[name]
		if c.Platforms == nil {
			continue
		}
		fmt.Fprintf(&b, "\n%s: one manifest list of %s per tool (--platform %s --manifest), trees compared per platform; ",
			name, strings.Join(c.Platforms, " and "), strings.Join(c.Platforms, ","))
		if row := c.Summary["cold"]; row.Builder != nil && row.Buildah != nil {
			fmt.Fprintf(&b, "cold build builder %s s, buildah %s s, builder/buildah %s (median). ", fmtNum(row.Builder.Median, "s"), fmtNum(row.Buildah.Median, "s"), fmtRatio(row.BuilderBuildah))
		}
		if len(c.Excluded) == 0 {
			fmt.Fprintf(&b, "No file excluded: buildah's cross-stage error changed no file.\n")
			continue
		}
		fmt.Fprintf(&b, "Excluded from the comparison, because of buildah's cross-stage error (buildah 1.28 runs a --platform=$BUILDPLATFORM stage again for every target, emulated, instead of once natively):\n\n")
		for _, e := range c.Excluded {
			fmt.Fprintf(&b, "- %s `%s`: builder %s, buildah %s\n", e.Platform, e.Path, e.Builder, e.Buildah)
		}
	}
	renderPod(&b, r)
	fmt.Fprintf(&b, "\nFloors, same data, same run (medians):\n\n")
	fmt.Fprintf(&b, "| case | context MB | tar of context | builder cache hash-context | pgzip of that tar | zstd of that tar | own layers MB | write own layers | create own layers' files | pgzip own layers | upload them | RUN steps |\n")
	fmt.Fprintf(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, name := range r.Order {
		f := r.Cases[name].Floors
		fmt.Fprintf(&b, "| %s | %.1f | %s s | %s s | %s s%s | %s s%s | %.1f | %s s | %s s | %s s | %s s | %d |\n", name,
			float64(f.ContextBytes)/1e6, fmtNum(f.TarContext.Median, "s"), fmtNum(f.HashContext.Median, "s"),
			fmtNum(f.PgzipContext.Median, "s"), mbps(f.ContextTar, f.PgzipContext.Median),
			fmtNum(f.ZstdContext.Median, "s"), mbps(f.ContextTar, f.ZstdContext.Median),
			float64(f.LayerBytes)/1e6, fmtNum(f.WriteLayers.Median, "s"), fmtNum(f.ExtractLayers.Median, "s"),
			fmtNum(f.PgzipLayers.Median, "s"), fmtNum(f.UploadLayers.Median, "s"), f.Runs)
	}
	fmt.Fprintf(&b, "\nEmpty user-namespace sandbox start (unshare + overlay mount + chroot + exec /bin/true): %.4f s median, %.4f s min.\n", r.Sandbox.Median, r.Sandbox.Min)
	var modes []string
	for _, tn := range []string{"builder", "buildah"} {
		for _, name := range r.Order {
			if tr := r.Cases[name].Tools[tn]; tr != nil {
				modes = append(modes, tn+": "+tr.CIMode)
				break
			}
		}
	}
	fmt.Fprintf(&b, "CI flow — %s.\n", strings.Join(modes, "; "))
	fmt.Fprintf(&b, "Acceptance: correctness: %v", r.Acceptance["correctness"])
	if v, ok := r.Acceptance["copy_big_builder_peak_rss_mib"]; ok {
		fmt.Fprintf(&b, "; builder peak RSS on copy-big %.0f MiB (limit 256 MiB: %s)", v, passFail(r.Acceptance["copy_big_builder_peak_rss_under_256mib"]))
	}
	if v, ok := r.Acceptance["per_run_ratio_le_0.25"]; ok {
		fmt.Fprintf(&b, "; per-RUN ratio ≤ 0.25: %s", passFail(v))
	}
	if v, ok := r.Acceptance["copy_big_ci_ratio"]; ok {
		fmt.Fprintf(&b, "; copy-big CI flow builder/buildah %.2f (≤ 0.5: %s)", v, passFail(r.Acceptance["copy_big_ci_ratio_le_0.5"]))
	}
	if v, ok := r.Acceptance["copy_big_push_new_ratio"]; ok {
		fmt.Fprintf(&b, "; push to a new repository %.2f (≤ 0.2: %s)", v, passFail(r.Acceptance["copy_big_push_new_ratio_le_0.2"]))
	}
	if v, ok := r.Acceptance["warm_rebuild"]; ok {
		fmt.Fprintf(&b, "; warm rebuild builder/buildah: %s: %s", v, passFail(r.Acceptance["warm_rebuild_ok"]))
	}
	if v, ok := r.Acceptance["multiarch_ratio"]; ok {
		fmt.Fprintf(&b, "; multiarch ≤ 0.5x buildah: cold build builder/buildah %.2f: %s", v, passFail(r.Acceptance["multiarch_ratio_le_0.5"]))
	}
	if v, ok := r.Acceptance["copy_many_touch_ratio"]; ok {
		fmt.Fprintf(&b, "; copy-many rebuild after touch %.3f (≤ 0.2: %s)", v, passFail(r.Acceptance["copy_many_touch_ratio_le_0.2"]))
	}
	if v, ok := r.Acceptance["copy_big_ci_zstd_speedup"]; ok {
		fmt.Fprintf(&b, "; CI flow gzip/zstd %.2fx (≥ 2: %s)", v, passFail(r.Acceptance["copy_big_ci_zstd_speedup_ge_2"]))
	}
	if v, ok := r.Acceptance["perf2"]; ok {
		fmt.Fprintf(&b, "; performance round 2: %s: %s", v, passFail(r.Acceptance["perf2_ok"]))
	}
	if v, ok := r.Acceptance["perf2_physical_floors"]; ok {
		fmt.Fprintf(&b, " (physical floors: %s)", v)
	}
	if v, ok := r.Acceptance["pod"]; ok {
		fmt.Fprintf(&b, "; pod stand-in ≤ 1.5x host (net): %s: %s", v, passFail(r.Acceptance["pod_le_1.5x_host"]))
	}
	fmt.Fprintf(&b, ".\nTotal bench wall time: %.0f s.\n", r.WallSeconds)
	return b.String()
}

// mbps is " (N MB/s)", or nothing for inputs too small to mean a throughput.
func mbps(bytes int64, secs float64) string {
	if bytes < 1<<20 || secs <= 0 {
		return ""
	}
	return fmt.Sprintf(" (%.0f MB/s)", float64(bytes)/1e6/secs)
}

func passFail(v any) string {
	if ok, _ := v.(bool); ok {
		return "pass"
	}
	return "FAIL"
}
