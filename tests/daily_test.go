package tests

import (
	"strings"
	"testing"
)

// Errors come early, with the right exit code and a useful message.
func TestEarlyErrors(t *testing.T) {
	base := "FROM " + env.baseOCI
	cases := []struct {
		name       string
		dockerfile string
		args       []string
		code       int
		wants      []string
	}{
		{"bad tag before any step", base + "\nRUN echo should-not-run\n", []string{"-t", "Bad:Name"}, 2,
			[]string{`-t "Bad:Name"`, "lowercase"}},
		{"typo of a stage", base + " AS build\nRUN echo x > /x\n" + base + "\nCOPY --from=bulid /x /x\n", nil, 1,
			[]string{"Dockerfile:4", `no stage named "bulid" (did you mean "build"?)`}},
		{"cycle named", base + " AS a\nCOPY --from=b /x /x\n" + base + " AS b\nCOPY --from=a /y /y\n" + base + "\nCOPY --from=a /x /x\n", nil, 1,
			[]string{"circular dependency detected on stage: a -> b -> a"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := contextDir(t, c.dockerfile, nil)
			so, se, code := runAt("", nil, nil, append(append([]string{"bud"}, c.args...), ctx)...)
			if code != c.code {
				t.Errorf("exit %d, want %d\n%s%s", code, c.code, so, se)
			}
			for _, w := range c.wants {
				if !strings.Contains(se, w) {
					t.Errorf("error lacks %q:\n%s", w, se)
				}
			}
			if strings.Contains(so, "should-not-run") || (c.code == 2 && strings.Contains(so, "STEP")) {
				t.Errorf("steps ran before the error:\n%s", so)
			}
		})
	}
	// A stage may copy from one defined later, as in BuildKit.
	ctx := contextDir(t, base+" AS first\nCOPY --from=second /made /made\n"+base+" AS second\nRUN echo later > /made\n", nil)
	out := t.TempDir()
	if so, se, code := runAt("", nil, nil, "bud", "-q", "--target", "first", "-o", "type=local,dest="+out, ctx); code != 0 {
		t.Fatalf("forward COPY --from: exit %d\n%s%s", code, so, se)
	}
	if got := readFile(t, out+"/made"); strings.TrimSpace(got) != "later" {
		t.Errorf("/made = %q", got)
	}
	// A missing image is the user's error (1), not builder's (125).
	for _, args := range [][]string{{"rmi", "localhost/no-such-image"}, {"inspect", "localhost/no-such-image"}, {"push", "localhost/no-such-image", "oci:" + t.TempDir() + ":x"}} {
		if _, se, code := runAt("", nil, nil, args...); code != 1 {
			t.Errorf("builder %v: exit %d, want 1\n%s", args, code, se)
		}
	}
}
