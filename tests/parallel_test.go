package tests

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// Two independent stages run at once in real sandboxes: each RUN waits
// (through a shared -v directory) until the other has started, so the
// build only succeeds if both are in flight together.
func TestParallelStagesE2E(t *testing.T) {
	sync := t.TempDir()
	os.Chmod(sync, 0o777)
	wait := func(me, other string) string {
		return fmt.Sprintf(`RUN touch /sync/%[1]s; i=0; while [ ! -e /sync/%[2]s ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; test -e /sync/%[2]s && echo %[1]s > /%[1]s`, me, other)
	}
	ctx := contextDir(t, "FROM "+env.baseOCI+" AS a\n"+wait("a", "b")+"\nFROM "+env.baseOCI+" AS b\n"+wait("b", "a")+
		"\nFROM "+env.baseOCI+"\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n", nil)
	out := t.TempDir() + "/oci"
	log := must(t, "", nil, nil, "bud", "--no-cache", "--jobs", "2", "-v", sync+":/sync", "-o", "type=oci,dest="+out, ctx)
	for _, re := range []string{`(?m)^\[1/3\] STEP 2/2: RUN touch /sync/a`, `(?m)^\[2/3\] STEP 2/2: RUN touch /sync/b`, `(?m)^\[3/3\] STEP 3/3: COPY --from=b /b /b`} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("no line %s in:\n%s", re, log)
		}
	}
	l := readLayout(t, out)
	files := map[string]string{}
	for i := range l.manifest.Layers {
		for n, c := range l.files(t, i) {
			files[strings.TrimPrefix(n, "./")] = c
		}
	}
	for _, f := range []string{"a", "b"} {
		if got := files[f]; got != f+"\n" {
			t.Errorf("/%s = %q, want %q", f, got, f+"\n")
		}
	}
}
