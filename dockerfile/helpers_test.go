package dockerfile

import (
	"strings"
	"testing"
)

func TestExposedPorts(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"80", "80/tcp"},
		{"53/udp", "53/udp"},
		{"9000/SCTP", "9000/sctp"},
		{"8000-8002", "8000/tcp 8001/tcp 8002/tcp"},
		{"7000-7000/udp", "7000/udp"},
		{"8080:80", "80/tcp"},
		{"127.0.0.1:8080:80/udp", "80/udp"},
		{"[::1]:8080:80", "80/tcp"},
		{"8000-8001:80", "80/tcp"},
		{"80/foo", "error"},
		{"90-80", "error"},
		{"70000", "error"},
		{"abc", "error"},
		{"/tcp", "error"},
		{"300.1.1.1:80:80", "error"},
		{"8000-8002:80-81", "error"},
	} {
		ports, err := exposedPorts(tt.in)
		got := strings.Join(ports, " ")
		if err != nil {
			got = "error"
		}
		if got != tt.want {
			t.Errorf("exposedPorts(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCheckSignal(t *testing.T) {
	for _, ok := range []string{"SIGTERM", "sigkill", "TERM", "9", "64", "SIGRTMIN+3", "RTMAX-2", "SIGWINCH"} {
		if err := checkSignal(ok); err != nil {
			t.Errorf("checkSignal(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "0", "65", "SIGNOPE", "RTMIN+40", "-1", "SIG"} {
		if err := checkSignal(bad); err == nil {
			t.Errorf("checkSignal(%q) should fail", bad)
		}
	}
}

func TestDestPath(t *testing.T) {
	for _, tt := range []struct{ wd, dest, want string }{
		{"", ".", "/"},
		{"/app", ".", "/app/"},
		{"/app", "", "/app/"},
		{"/app", "./", "/app/"},
		{"/app", "sub", "/app/sub"},
		{"/app", "sub/", "/app/sub/"},
		{"/app", "sub/.", "/app/sub/"},
		{"/app", "../etc/x", "/etc/x"},
		{"/app", "/abs//x/../y", "/abs/y"},
		{"/app", "/", "/"},
		{"/app", "/dir/", "/dir/"},
		{"relative", "x", "/relative/x"},
	} {
		if got := destPath(tt.wd, tt.dest); got != tt.want {
			t.Errorf("destPath(%q, %q) = %q, want %q", tt.wd, tt.dest, got, tt.want)
		}
	}
}

func TestWorkdir(t *testing.T) {
	for _, tt := range []struct{ cur, p, want string }{
		{"", "", "/"},
		{"", "app", "/app"},
		{"/srv", "app", "/srv/app"},
		{"/srv", "../x", "/x"},
		{"/srv", "/opt/", "/opt"},
		{"/srv/app", "", "/srv/app"},
		{"/", "../../..", "/"},
	} {
		if got := workdir(tt.cur, tt.p); got != tt.want {
			t.Errorf("workdir(%q, %q) = %q, want %q", tt.cur, tt.p, got, tt.want)
		}
	}
}

func TestNormChmod(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", ""},
		{"755", "0755"},
		{"0644", "0644"},
		{"4755", "4755"},
		{"7777", "7777"},
		{"0", "0000"},
		{"10000", "error"},
		{"888", "error"},
		{"u+x", "error"},
		{"-1", "error"},
	} {
		got, err := normChmod(tt.in)
		if err != nil {
			got = "error"
		}
		if got != tt.want {
			t.Errorf("normChmod(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestChownByName(t *testing.T) {
	for in, want := range map[string]bool{
		"1000": false, "1000:1000": false, ":10": false,
		"app": true, "1000:staff": true, "app:10": true,
	} {
		if got := chownByName(in); got != want {
			t.Errorf("chownByName(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestBuiltinSyntax(t *testing.T) {
	for in, want := range map[string]bool{
		"docker/dockerfile:1":                        true,
		"docker/dockerfile:1.7-labs":                 true,
		"docker.io/docker/dockerfile:1":              true,
		"docker/dockerfile-upstream:master":          true,
		"docker/dockerfile@sha256:abc":               true,
		"example.com/frontend:1":                     false,
		"tonistiigi/dockerfile:runmount20180618":     false,
		"docker.io/docker/dockerfile-copy:v0.1.9@x":  false,
		"docker/dockerfile-upstream-fake:latest-ish": false,
	} {
		if got := builtinSyntax(in); got != want {
			t.Errorf("builtinSyntax(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestIsGitSource(t *testing.T) {
	for in, want := range map[string]bool{
		"git@github.com:moby/buildkit.git":              true,
		"https://github.com/moby/buildkit.git#v0.10.1":  true,
		"https://github.com/moby/buildkit.git":          true,
		"git://example.com/repo":                        true,
		"https://example.com/file.tar.gz":               false,
		"local/dir.git":                                 false,
		"https://example.com/dir.git/file.txt#fragment": false,
	} {
		if got := IsGitSource(in); got != want {
			t.Errorf("IsGitSource(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:s3cret@host/a.tgz":  "https://user:xxxxx@host/a.tgz",
		"http://u:p@127.0.0.1:8080/x?y=1": "http://u:xxxxx@127.0.0.1:8080/x?y=1",
		"https://token@host/a":            "https://token@host/a", // no password to hide
		"https://host/a":                  "https://host/a",
		"git@github.com:org/repo.git":     "git@github.com:org/repo.git",
		"local/file@2x.png":               "local/file@2x.png",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	// The step text (STEP lines, history, cache records) never holds the password.
	f, err := Parse(strings.NewReader("FROM scratch\nADD --checksum=sha256:"+strings.Repeat("a", 64)+" https://me:hunter2@example.com/f /f\n"), "Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.Plan(PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	steps, err := p.Lower(p.Stages[0], BaseConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if strings.Contains(s.String(), "hunter2") {
			t.Errorf("step text %q holds the password", s.String())
		}
		if c, ok := s.(*Copy); ok && c.Srcs[0] != "https://me:hunter2@example.com/f" {
			t.Errorf("the source itself must keep its credentials: %q", c.Srcs[0])
		}
	}
}
