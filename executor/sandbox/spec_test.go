package sandbox

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestParseIsolation(t *testing.T) {
	for in, want := range map[string]Isolation{
		"": IsolationDefault, "default": IsolationDefault, "rootless": IsolationDefault, "userns": IsolationDefault,
		"chroot": IsolationChroot, "CHROOT": IsolationChroot, "oci": IsolationOCI, "runc": IsolationOCI, "crun": IsolationOCI,
	} {
		got, err := ParseIsolation(in)
		if err != nil || got != want {
			t.Errorf("ParseIsolation(%q) = %v, %v; want %v", in, got, err, want)
		}
		if back, _ := ParseIsolation(got.String()); back != got {
			t.Errorf("String() of %v does not parse back", got)
		}
	}
	if _, err := ParseIsolation("vm"); err == nil {
		t.Error("ParseIsolation(vm) succeeded")
	}
}

func TestHostsFile(t *testing.T) {
	host := "# comment\n127.0.0.1 localhost\n127.0.1.1 myhost\n::1 localhost\n10.1.2.3   registry.local reg\n"
	want := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.1.2.3\tregistry.local\treg\n127.0.0.1\trunbox\n"
	if got := string(hostsFile([]byte(host), "runbox")); got != want {
		t.Errorf("hostsFile:\n%s\nwant:\n%s", got, want)
	}
}

func TestResolvConf(t *testing.T) {
	host := "nameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nsearch example.com\noptions edns0\n"
	if got := string(resolvConf([]byte(host), false)); got != host {
		t.Errorf("host network changed resolv.conf: %q", got)
	}
	want := "nameserver 10.0.0.2\nsearch example.com\noptions edns0\n"
	if got := string(resolvConf([]byte(host), true)); got != want {
		t.Errorf("resolvConf(none) = %q, want %q", got, want)
	}
}

func TestSpec(t *testing.T) {
	root := t.TempDir()
	sb := &Sandbox{StateDir: t.TempDir()}
	extra := specs.Mount{Destination: "/cache", Type: "tmpfs", Source: "tmpfs"}
	sp, err := sb.Spec(SpecOptions{Rootfs: root, Args: []string{"make"}, UID: 1000, GID: 10,
		AdditionalGids: []uint32{20}, Network: "none", Mounts: []specs.Mount{extra}})
	must(t, err)
	p := sp.Process
	if !p.NoNewPrivileges || p.Cwd != "/" || p.User.UID != 1000 || !reflect.DeepEqual(p.User.AdditionalGids, []uint32{20}) {
		t.Errorf("process = %+v", p)
	}
	if len(p.Capabilities.Effective) != 0 || len(p.Capabilities.Permitted) != 0 || len(p.Capabilities.Bounding) != 14 {
		t.Errorf("non-root capabilities = %+v", p.Capabilities)
	}
	if !hasNamespace(sp, specs.NetworkNamespace) || !hasNamespace(sp, specs.PIDNamespace) || hasNamespace(sp, specs.UserNamespace) {
		t.Errorf("namespaces = %+v", sp.Linux.Namespaces)
	}
	if !strings.Contains(strings.Join(p.Env, " "), "PATH="+DefaultPath) || sp.Hostname != DefaultHostname {
		t.Errorf("env %v, hostname %q", p.Env, sp.Hostname)
	}
	var dests []string
	for _, m := range sp.Mounts {
		dests = append(dests, m.Destination)
	}
	if got := strings.Join(dests, " "); got != "/proc /dev /dev/pts /dev/shm /sys /etc/hosts /etc/resolv.conf /cache" {
		t.Errorf("mounts = %s", got)
	}
	state := sp.Annotations[annotationState]
	if _, err := os.Stat(filepath.Join(state, "hosts")); err != nil {
		t.Errorf("hosts not written: %v", err)
	}
	sb.removeState(sp)
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state dir not removed: %v", err)
	}
	for _, bad := range []SpecOptions{
		{Rootfs: "relative", Args: []string{"x"}},
		{Rootfs: root},
		{Rootfs: root, Args: []string{"x"}, Cwd: "rel"},
		{Rootfs: root, Args: []string{"x"}, Network: "bridge"},
	} {
		if _, err := sb.Spec(bad); err == nil {
			t.Errorf("Spec(%+v) succeeded", bad)
		}
	}
}

func TestRootMountpoints(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	must(t, os.WriteFile(file, nil, 0o644))
	got, err := rootMountpoints([]specs.Mount{
		{Destination: "/dev", Type: "tmpfs"}, {Destination: "/dev/pts", Type: "devpts"},
		{Destination: "/etc/hosts", Type: "bind", Source: file}, {Destination: "/devices", Type: "tmpfs"},
	})
	must(t, err)
	want := []mountpoint{{dest: "/dev", dir: true}, {dest: "/etc/hosts"}, {dest: "/devices", dir: true}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rootMountpoints = %+v, want %+v", got, want)
	}
	if _, err := rootMountpoints([]specs.Mount{{Destination: "/", Type: "tmpfs"}}); err == nil {
		t.Error("a mount over / was accepted")
	}
}

// TestPrepareSymlinks: a mountpoint reached through a symlink in the
// image is made where the symlink points inside the rootfs, never outside,
// and removed again.
func TestPrepareSymlinks(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	must(t, os.Symlink(outside, filepath.Join(root, "etc"))) // absolute: must resolve inside root
	before := walk(t, root)
	c, err := prepare(root, []mountpoint{{dest: "/etc/hosts"}})
	must(t, err)
	if _, err := os.Stat(filepath.Join(root, outside, "hosts")); err != nil {
		t.Errorf("mountpoint not made inside the rootfs: %v", err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("wrote outside the rootfs: %v", ents)
	}
	left, err := c.cleanup()
	if err != nil || len(left) != 0 {
		t.Errorf("cleanup: %v, left %v", err, left)
	}
	if d := diffWalks(before, walk(t, root)); len(d) > 0 {
		t.Errorf("rootfs changed: %v", d)
	}
}

// TestCleanupLeavesRunContent: a mountpoint directory that the RUN filled
// (a failed mount in chroot isolation) stays, with its content.
func TestCleanupLeavesRunContent(t *testing.T) {
	root := t.TempDir()
	c, err := prepare(root, []mountpoint{{dest: "/a/b", dir: true}, {dest: "/f"}})
	must(t, err)
	must(t, os.WriteFile(filepath.Join(root, "a/b/kept"), []byte("x"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "f"), []byte("written"), 0o644))
	left, err := c.cleanup()
	must(t, err)
	if !reflect.DeepEqual(left, []string{"f", "a/b", "a"}) {
		t.Errorf("left = %v", left)
	}
	if _, err := os.Stat(filepath.Join(root, "a/b/kept")); err != nil {
		t.Error(err)
	}
}
