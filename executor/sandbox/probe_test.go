package sandbox

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestChoose(t *testing.T) {
	eperm := errors.New("operation not permitted")
	all := ^uint64(0)
	def, chroot := IsolationDefault, IsolationChroot
	cases := []struct {
		name    string
		env     Env
		forced  *Isolation
		want    Isolation
		wantErr string
		flags   string   // expected plan flags: p=ProcBind h=NoHostname m=NoMounts
		says    []string // words the downgrades must contain
	}{
		{name: "laptop", env: Env{CapBnd: all}, want: IsolationDefault},
		{name: "pod: masked /proc, no sethostname", env: Env{CapBnd: all, ProcMount: eperm, Hostname: eperm},
			want: IsolationDefault, flags: "ph", says: []string{"procMount: Unmasked", "hostname"}},
		{name: "pod: fewer caps", env: Env{CapBnd: 0xa80425fb &^ (1 << 27)}, want: IsolationDefault, says: []string{"CAP_MKNOD"}},
		{name: "no namespaces, chroot in a mount namespace", env: Env{CapBnd: all, Namespaces: eperm, ProcMount: eperm}, want: IsolationChroot,
			flags: "p", says: []string{"chroot isolation"}},
		{name: "no namespaces at all, chroot", env: Env{CapBnd: all, Namespaces: eperm, MountNS: eperm}, want: IsolationChroot,
			flags: "m", says: []string{"without a mount namespace"}},
		{name: "nothing", env: Env{CapBnd: all, Namespaces: eperm, MountNS: eperm, Chroot: eperm}, want: IsolationNone,
			says: []string{"Dockerfiles without RUN still build"}},
		{name: "forced default that cannot work", env: Env{Namespaces: eperm, Euid: 1000}, forced: &def, wantErr: "in a user namespace"},
		{name: "forced chroot that cannot work", env: Env{Namespaces: eperm, Chroot: eperm}, forced: &chroot, wantErr: "chroot is not allowed"},
		{name: "forced chroot, no step down said", env: Env{CapBnd: all}, forced: &chroot, want: IsolationChroot},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := c.env.Choose(c.forced)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("want error %q, got %v (%+v)", c.wantErr, err, p)
				}
				return
			}
			if err != nil || p.Isolation != c.want {
				t.Fatalf("got %v, %v; want %v", p.Isolation, err, c.want)
			}
			flags := ""
			for _, f := range []struct {
				on bool
				c  string
			}{{p.ProcBind, "p"}, {p.NoHostname, "h"}, {p.NoMounts, "m"}} {
				if f.on {
					flags += f.c
				}
			}
			if flags != c.flags {
				t.Errorf("flags %q, want %q", flags, c.flags)
			}
			said := strings.Join(p.Downgrades, "\n")
			for _, w := range c.says {
				if !strings.Contains(said, w) {
					t.Errorf("downgrades lack %q:\n%s", w, said)
				}
			}
			if len(c.says) == 0 && said != "" {
				t.Errorf("unexpected downgrades:\n%s", said)
			}
		})
	}
}

// The probe in this process: the test machine allows the full sandbox.
func TestProbeHere(t *testing.T) {
	before, _ := filepath.Glob("/tmp/builder-probe-*")
	e := probe() // not Probe's memo: the children must run here
	// Probes used to leave a directory in /tmp each.
	if after, _ := filepath.Glob("/tmp/builder-probe-*"); len(after) > len(before) {
		t.Errorf("the probe left %d directories in /tmp", len(after)-len(before))
	}
	if e.Namespaces != nil || e.Chroot != nil {
		t.Fatalf("this machine allows namespaces and chroot; probe says %v, %v", e.Namespaces, e.Chroot)
	}
	if e.Seccomp == "" || e.CapBnd == 0 {
		t.Errorf("status not read: %+v", e)
	}
}

// userNSRefusedEnv marks the run of TestUserNamespaceError inside a user
// namespace whose user.max_user_namespaces is 0, where the clone must fail.
const userNSRefusedEnv = "BUILDER_TEST_USERNS_REFUSED"

func TestUserNamespaceError(t *testing.T) {
	if os.Getenv(userNSRefusedEnv) != "" {
		err := UserNamespaceError()
		if !errors.Is(err, unix.ENOSPC) {
			t.Fatalf("with user.max_user_namespaces=0: got %v, want ENOSPC (the clone's refusal)", err)
		}
		return
	}
	if err := UserNamespaceError(); err != nil {
		t.Fatalf("user namespaces work here (make test runs where they do): %v", err)
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("unshare (util-linux) is needed: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A user namespace may lower the limit for those it makes: 0 refuses
	// the next clone(CLONE_NEWUSER) with ENOSPC, as a locked-down host does.
	cmd := exec.Command("unshare", "--user", "--map-root-user", "sh", "-c",
		`echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" -test.run '^TestUserNamespaceError$' -test.count=1 -test.v`, self)
	cmd.Env = append(os.Environ(), userNSRefusedEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestUserNamespaceError") {
		t.Fatalf("refused case: %v\n%s", err, out)
	}
}
