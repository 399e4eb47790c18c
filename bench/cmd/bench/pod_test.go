package main

import (
	"strings"
	"testing"
)

func podResults(runs map[string][]float64, host map[string]float64, start float64) *results {
	r := &results{Cases: map[string]*caseResult{}, Acceptance: map[string]any{},
		Pod: &podSection{Start: mkStat([]float64{start, start}), Cases: map[string]*podCase{}, Command: "podman run …"}}
	for _, name := range []string{"copy-big", "run10"} {
		h := mkStat([]float64{host[name]})
		r.Cases[name] = &caseResult{Summary: map[string]summaryRow{"cold": {Builder: &h}}}
		pc := &podCase{Correctness: "same tree as the host's"}
		for _, w := range runs[name] {
			pc.Raw = append(pc.Raw, w)
		}
		r.Pod.Order = append(r.Pod.Order, name)
		r.Pod.Cases[name] = pc
	}
	return r
}

func TestSummarizePod(t *testing.T) {
	// Net = raw − 0.2: copy-big 1.4/1.0, run10 1.7/1.0 (raw ratio 1.9).
	r := podResults(map[string][]float64{"copy-big": {1.6, 1.5, 1.7}, "run10": {1.9, 1.8}}, map[string]float64{"copy-big": 1, "run10": 1}, 0.2)
	summarizePod(r)
	cb, r10 := r.Pod.Cases["copy-big"], r.Pod.Cases["run10"]
	if cb.RawStat.Median != 1.6 || *cb.NetRatio < 1.399 || *cb.NetRatio > 1.401 {
		t.Errorf("copy-big: raw %v, net ratio %v", cb.RawStat, *cb.NetRatio)
	}
	if *r10.RawRatio != 1.85 || *r10.NetRatio < 1.649 || *r10.NetRatio > 1.651 {
		t.Errorf("run10: raw ratio %v, net ratio %v", *r10.RawRatio, *r10.NetRatio)
	}
	if r.Acceptance["pod_le_1.5x_host"] != false || r.Acceptance["pod"] != "copy-big 1.40, run10 1.65" {
		t.Errorf("acceptance %v %v", r.Acceptance["pod_le_1.5x_host"], r.Acceptance["pod"])
	}
	md := renderTable(r)
	for _, w := range []string{"| copy-big | 1.50 / 1.60 | 1.30 / 1.40 | 1.00 / 1.00 | 1.60 | 1.40 | same tree as the host's |",
		"pod stand-in ≤ 1.5x host (net): copy-big 1.40, run10 1.65: FAIL"} {
		if !strings.Contains(md, w) {
			t.Errorf("table lacks %q:\n%s", w, md)
		}
	}

	r = podResults(map[string][]float64{"copy-big": {1.2}, "run10": {1.1}}, map[string]float64{"copy-big": 1, "run10": 1}, 0.2)
	summarizePod(r)
	if r.Acceptance["pod_le_1.5x_host"] != true {
		t.Errorf("want pass: %v", r.Acceptance["pod"])
	}
	// A failed build or a different image fails the acceptance.
	r = podResults(map[string][]float64{"copy-big": {1.2}, "run10": nil}, map[string]float64{"copy-big": 1, "run10": 1}, 0.2)
	r.Pod.Cases["run10"].Error = "podman run …: exit status 1\nError: RUN cannot run here"
	r.Pod.Cases["copy-big"].Correctness = "DIFFERS from the host's (1 differences, first: /data/a.bin: size)"
	summarizePod(r)
	if r.Acceptance["pod_le_1.5x_host"] != false || !strings.Contains(r.Acceptance["pod"].(string), "run10 failed") ||
		!strings.Contains(r.Acceptance["pod"].(string), "image differs") {
		t.Errorf("want FAIL: %v", r.Acceptance["pod"])
	}
	if md := renderTable(r); !strings.Contains(md, "| run10 | n/a | n/a | 1.00 / 1.00 | – | – | build FAILED: podman run …: exit status 1 |") {
		t.Errorf("table:\n%s", md)
	}
}

func TestPodInfo(t *testing.T) {
	m := podInfo(`{"Process": {"Euid": 0, "UserNS": true, "MappedIDs": 64536, "Seccomp": "filter"}, "Store": {"Driver": "overlay"},
		"Isolation": "default", "Fallbacks": ["the hostname cannot be set (sethostname: operation not permitted): RUN steps keep it"], "Snapshotter": "overlay"}`)
	if m["Snapshotter"] != "overlay" || m["Process.Seccomp"] != "filter" || m["Store.Driver"] != "overlay" || m["Process.UserNS"] != true {
		t.Errorf("%v", m)
	}
	r := podResults(map[string][]float64{"copy-big": {1}, "run10": {1}}, map[string]float64{"copy-big": 1, "run10": 1}, 0.2)
	r.Pod.Info = m
	summarizePod(r)
	if md := renderTable(r); !strings.Contains(md, "fallbacks: the hostname cannot be set.") {
		t.Errorf("table:\n%s", md)
	}
}
