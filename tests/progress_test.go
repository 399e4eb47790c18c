package tests

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// --progress=json: one JSON object per line; a start and an end event for
// every step, the end with its duration; output lines and a build-end.
func TestProgressJSON(t *testing.T) {
	ctx := contextDir(t, "FROM "+env.baseOCI+"\nRUN echo one && echo two\nCOPY a.txt /a.txt\n", map[string]string{"a.txt": "a"})
	so, se, code := runAt("", nil, nil, "bud", "--no-cache", "--progress=json", ctx)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, so, se)
	}
	starts, ends := map[int]bool{}, map[int]bool{}
	var outputs []string
	var end map[string]any
	for _, line := range strings.Split(strings.TrimSpace(so), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		step, _ := ev["step"].(float64)
		switch ev["type"] {
		case "step-start":
			starts[int(step)] = true
		case "step-end":
			ends[int(step)] = true
			if d, _ := ev["duration_ns"].(float64); step > 1 && d <= 0 {
				t.Errorf("step %v ended without a duration: %s", step, line)
			}
		case "output":
			outputs = append(outputs, ev["text"].(string))
		case "build-end":
			end = ev
		}
	}
	if len(starts) != 3 || len(ends) != 3 {
		t.Errorf("starts %v, ends %v; want steps 1-3 each\n%s", starts, ends, so)
	}
	if strings.Join(outputs, ",") != "one,two" {
		t.Errorf("output events %q", outputs)
	}
	if end == nil || !strings.HasPrefix(end["image"].(string), "sha256:") {
		t.Errorf("build-end: %v", end)
	}
}

// On a terminal (a pseudo-terminal from script(1)), the live view redraws
// running steps with their elapsed time and collapses finished ones.
func TestProgressTTY(t *testing.T) {
	ctx := contextDir(t, "FROM "+env.baseOCI+"\nRUN for i in 1 2 3; do echo tick $i; sleep 0.3; done\n", nil)
	cmd := strings.Join([]string{env.bin, "--root", env.root, "--runroot", env.runroot, "--storage-driver", "vfs", "bud", "--no-cache", ctx}, " ")
	out, err := exec.Command("script", "-q", "-e", "-c", cmd, "/dev/null").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{
		"\x1b[",                        // redraws
		"=> [1/1] STEP 2/2: RUN for i", // the running step
		"   | tick 1",                  // its output under it
		"✔ [1/1] STEP 2/2: RUN for i",  // collapsed when done
		"Built in ",                    // the summary
	} {
		if !strings.Contains(s, want) {
			t.Errorf("tty view lacks %q:\n%q", want, s)
		}
	}
	if !strings.Contains(s, "s\r\n") {
		t.Errorf("no elapsed time in the live view:\n%q", s)
	}
}
