package dockerfile

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// lowerAll parses, plans and lowers every stage of src.
func lowerAll(src string) error {
	f, err := Parse(strings.NewReader(src), "Dockerfile")
	if err != nil {
		return err
	}
	p, err := f.Plan(PlanOptions{})
	if err != nil {
		return err
	}
	for _, s := range p.Stages {
		if _, err := p.Lower(s, BaseConfig{}); err != nil {
			return err
		}
	}
	return nil
}

// doubling makes ARG a1=$a0$a0 ... an=$a(n-1)$a(n-1): 10·2^n bytes at line n+2.
func doubling(n int, kw string) string {
	var b strings.Builder
	b.WriteString("FROM scratch\n" + kw + " a0=0123456789\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%s a%d=${a%d}${a%d}\n", kw, i, i-1, i-1)
	}
	return b.String()
}

func TestLimits(t *testing.T) {
	tests := []struct {
		name, src, want string // want: "" for success, else the error's text
	}{
		{"billion laughs in ARG", doubling(40, "ARG"), "Dockerfile:19: expanding \"${a16}${a16}\" would make a word over the 1.0 MiB limit"},
		{"billion laughs in ENV", doubling(40, "ENV"), "Dockerfile:19: expanding"},
		{"doubling that stays small", doubling(15, "ENV"), ""},
		{"one word referencing a big value many times",
			"FROM scratch\n" + bigArg("a") + "LABEL l=$a$a\n", "Dockerfile:8: expanding"},
		{"pattern replacement blow-up",
			"FROM scratch\nARG a=" + strings.Repeat("x", 4096) + "\nLABEL l=${a//x/" + strings.Repeat("y", 512) + "}\n", "Dockerfile:3: expanding"},
		{"global ARGs", strings.Replace(doubling(40, "ARG"), "FROM scratch\n", "", 1) + "FROM scratch\n", "Dockerfile:18: expanding"},
		{"20,000 labels", "FROM scratch\n" + strings.Repeat("LABEL key$x=value\n", 20000), ""},
		{"config over 4 MiB", "FROM scratch\n" + bigArg("v") + "LABEL k1=$v\nLABEL k2=$v\nLABEL k3=$v\nLABEL k4=$v\nLABEL k5=$v\n",
			"Dockerfile:10: the image config would be 5.6 MiB, over the 4.0 MiB"},
		{"ARGs over 4 MiB", "FROM scratch\n" + bigArg("a") + bigArg("b") + bigArg("c"), "Dockerfile:12: the ARG values in effect would exceed 4.0 MiB"},
		{"RUNs carrying a big environment", "FROM scratch\n" + bigArg("a") + "ENV big=$a\n" + strings.Repeat("RUN true\n", 100),
			"the steps of this stage would hold over 64.0 MiB"},
		{"Dockerfile over 4 MiB", "FROM scratch\n" + strings.Repeat("# padding padding padding\n", 50000), "Dockerfile: the Dockerfile is larger than 1.0 MiB"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := lowerAll(tc.src)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrTooLarge) {
				t.Fatalf("err = %v\nwant %q (ErrTooLarge)", err, tc.want)
			}
		})
	}
}

// bigArg declares NAME0..NAME4, doubling a 60 KiB line (the parser's
// line limit is 64 KiB) up to NAME = 960 KiB: five lines, then one more.
func bigArg(name string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ARG %s0=%s\n", name, strings.Repeat("x", 60<<10))
	for i := 1; i <= 4; i++ {
		fmt.Fprintf(&b, "ARG %s%d=${%s%d}${%s%d}\n", name, i, name, i-1, name, i-1)
	}
	fmt.Fprintf(&b, "ARG %s=${%s4}\n", name, name)
	return b.String()
}
