package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/builder-dev/builder/registry"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

type loginOptions struct {
	reg           registryFlags
	username      string
	password      string
	passwordStdin bool
}

func newLoginCmd(g *globalOptions) *cobra.Command {
	o := &loginOptions{}
	cmd := &cobra.Command{
		Use:   "login [flags] REGISTRY",
		Short: "Log in to a registry",
		Long: "Check the credentials against REGISTRY and store them in the auth file (auth.json, as podman\n" +
			"does: --authfile, else $REGISTRY_AUTH_FILE, else ${XDG_RUNTIME_DIR}/containers/auth.json).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), g, args[0])
		},
	}
	f := cmd.Flags()
	o.reg.add(f, false, true)
	f.StringVarP(&o.username, "username", "u", "", "user name")
	f.StringVarP(&o.password, "password", "p", "", "password (prefer --password-stdin: arguments are visible to other users)")
	f.BoolVar(&o.passwordStdin, "password-stdin", false, "read the password from standard input")
	return cmd
}

func (o *loginOptions) run(ctx context.Context, g *globalOptions, server string) error {
	if o.passwordStdin && o.password != "" {
		return usagef("--password and --password-stdin conflict")
	}
	sys, err := o.reg.options().SystemContext(nil, "")
	if err != nil {
		return usageError{err}
	}
	in := bufio.NewReader(g.stdin)
	user, pass := o.username, o.password
	if user == "" {
		if !isTerminal(g.stdin) || o.passwordStdin {
			return usagef("login: --username is required")
		}
		fmt.Fprint(g.stderr, "Username: ")
		if user, err = readLine(in); err != nil {
			return err
		}
	}
	switch {
	case o.passwordStdin:
		b, err := io.ReadAll(in)
		if err != nil {
			return fmt.Errorf("reading the password from stdin: %w", err)
		}
		pass = strings.TrimRight(string(b), "\r\n")
	case pass == "":
		if !isTerminal(g.stdin) {
			return usagef("login: no password given (use --password-stdin)")
		}
		fmt.Fprint(g.stderr, "Password: ")
		pass, err = readPassword(g.stdin.(*os.File), in)
		fmt.Fprintln(g.stderr)
		if err != nil {
			return err
		}
	}
	rt := o.reg.options().Retrier()
	rt.Log = g.log
	if _, err := registry.Login(ctx, sys, rt, server, user, pass); err != nil {
		return err
	}
	fmt.Fprintln(g.stdout, "Login Succeeded!")
	return nil
}

func readLine(r *bufio.Reader) (string, error) {
	s, err := r.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && s != "") {
		return "", err
	}
	return strings.TrimRight(s, "\r\n"), nil
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// readPassword reads a line from the terminal f with echo off.
func readPassword(f *os.File, r *bufio.Reader) (string, error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", err
	}
	noEcho := *old
	noEcho.Lflag &^= unix.ECHO
	noEcho.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &noEcho); err != nil {
		return "", err
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old) //nolint:errcheck // best effort restore
	return readLine(r)
}
