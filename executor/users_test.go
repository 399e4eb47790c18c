package executor

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func testRootfs(t *testing.T) *os.Root {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc", "passwd"), []byte(strings.Join([]string{
		"root:x:0:0:root:/root:/bin/sh",
		"# a comment",
		"app:x:1000:1001:app:/home/app:/bin/sh",
		"svc:x:2000:2000::/srv:/bin/false",
		"31337:x:0:0:numeric name:/root:/bin/sh",
	}, "\n")+"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc", "group"), []byte(strings.Join([]string{
		"root:x:0:",
		"wheel:x:10:app,svc",
		"staff:x:50:app",
		"appgrp:x:1001:",
	}, "\n")+"\n"), 0o644)
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestResolveChown(t *testing.T) {
	root := testRootfs(t)
	tests := []struct {
		spec    string
		want    idPair
		wantErr string
	}{
		{"app", idPair{1000, 1001}, ""},
		{"app:wheel", idPair{1000, 10}, ""},
		{"app:7", idPair{1000, 7}, ""},
		{"1000", idPair{1000, 1001}, ""}, // known uid: its primary group
		{"4321", idPair{4321, 4321}, ""}, // unknown uid: gid = uid
		{"4321:5", idPair{4321, 5}, ""},
		{"nobody-here", idPair{}, "unable to find user nobody-here"},
		{"app:nogroup", idPair{}, "unable to find group nogroup"},
		{":10", idPair{}, "invalid user"},
		{"app:", idPair{}, "invalid group"},
		{"-1", idPair{}, "invalid uid"},
		{"4294967296", idPair{}, "must be in range"},
		{"31337", idPair{31337, 31337}, ""}, // the id, not the user named 31337
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := resolveChown(root, tc.spec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestResolveUser(t *testing.T) {
	root := testRootfs(t)
	tests := []struct {
		spec       string
		uid, gid   int
		groups     []uint32
		home       string
		wantErrSub string
	}{
		{"", 0, 0, []uint32{0}, "/root", ""},
		{"app", 1000, 1001, []uint32{1001, 10, 50}, "/home/app", ""},
		{"1000", 1000, 1001, []uint32{1001, 10, 50}, "/home/app", ""},
		{"app:wheel", 1000, 10, []uint32{10, 50}, "/home/app", ""}, // memberships apply with an explicit group too
		{"1000:7", 1000, 7, []uint32{7, 10, 50}, "/home/app", ""},
		{"svc", 2000, 2000, []uint32{2000, 10}, "/srv", ""},
		{"5555", 5555, 0, []uint32{0}, "/", ""}, // unknown uid runs with gid 0
		{"5555:42", 5555, 42, []uint32{42}, "/", ""},
		{"31337", 31337, 0, []uint32{0}, "/", ""}, // a user *named* 31337 (uid 0) is not uid 31337's entry
		{"4294967296", 0, 0, nil, "", "must be in range"},
		{"1:4294967296", 0, 0, nil, "", "must be in range"},
		{"ghost", 0, 0, nil, "", "unable to find user ghost"},
		{"app:ghosts", 0, 0, nil, "", "unable to find group ghosts"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			u, err := resolveUser(root, tc.spec)
			if tc.wantErrSub != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrSub) {
					t.Fatalf("err = %v, want %q", err, tc.wantErrSub)
				}
				return
			}
			if err != nil || u.UID != tc.uid || u.GID != tc.gid || u.home != tc.home || !slices.Equal(u.groups, tc.groups) {
				t.Fatalf("got %+v, %v", u, err)
			}
		})
	}
}

func TestPrefixWriter(t *testing.T) {
	var buf bytes.Buffer
	p := &prefixWriter{w: &buf, prefix: "[1/1] | "}
	p.Write([]byte("one\ntw"))
	p.Write([]byte("o\nthree"))
	p.Flush()
	want := "[1/1] | one\n[1/1] | two\n[1/1] | three\n"
	if buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
}

func TestUnixModeAndTarSniff(t *testing.T) {
	if m := unixMode(0o4755); m.Perm() != 0o755 || m&os.ModeSetuid == 0 {
		t.Errorf("unixMode(04755) = %v", m)
	}
	if m := unixMode(0o1777); m&os.ModeSticky == 0 {
		t.Errorf("unixMode(01777) = %v", m)
	}
	if isTarHeader(make([]byte, 100)) {
		t.Error("short input taken for a tar header")
	}
	if isTarHeader(bytes.Repeat([]byte("x"), 512)) {
		t.Error("garbage taken for a tar header")
	}
}
