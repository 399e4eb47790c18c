package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/builder-dev/builder/images"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func newLoginCmd(g *globalOptions) *cobra.Command {
	var reg registryFlags
	var user, pass string
	var passwordStdin bool
	cmd := &cobra.Command{
		Use:   "login [flags] REGISTRY",
		Short: "Log in to a registry",
		Long: "Check the credentials against REGISTRY and store them in the auth file (auth.json, as podman\n" +
			"does: --authfile, else $REGISTRY_AUTH_FILE, else ${XDG_RUNTIME_DIR}/containers/auth.json).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if passwordStdin && pass != "" {
				return usagef("--password and --password-stdin conflict")
			}
			in := bufio.NewReader(g.stdin)
			tty, isTTY := g.stdin.(*os.File)
			isTTY = isTTY && term.IsTerminal(int(tty.Fd()))
			var err error
			if user == "" {
				if !isTTY || passwordStdin {
					return usagef("login: --username is required")
				}
				fmt.Fprint(g.stderr, "Username: ")
				if user, err = readLine(in); err != nil {
					return err
				}
			}
			switch {
			case passwordStdin:
				b, err := io.ReadAll(in)
				if err != nil {
					return fmt.Errorf("reading the password from stdin: %w", err)
				}
				pass = strings.TrimRight(string(b), "\r\n")
			case pass == "":
				if !isTTY {
					return usagef("login: no password given (use --password-stdin)")
				}
				fmt.Fprint(g.stderr, "Password: ")
				b, err := term.ReadPassword(int(tty.Fd()))
				fmt.Fprintln(g.stderr)
				if err != nil {
					return err
				}
				pass = string(b)
			}
			ro, err := reg.options()
			if err != nil {
				return err
			}
			if err := images.Login(cmd.Context(), ro, args[0], user, pass, g.log); err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, "Login Succeeded!")
			return nil
		},
	}
	f := cmd.Flags()
	reg.add(f, false, true)
	f.StringVarP(&user, "username", "u", "", "user name")
	f.StringVarP(&pass, "password", "p", "", "password (prefer --password-stdin: arguments are visible to other users)")
	f.BoolVar(&passwordStdin, "password-stdin", false, "read the password from standard input")
	return cmd
}

func readLine(r *bufio.Reader) (string, error) {
	s, err := r.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && s != "") {
		return "", err
	}
	return strings.TrimRight(s, "\r\n"), nil
}

func newLogoutCmd(g *globalOptions) *cobra.Command {
	var reg registryFlags
	var all bool
	cmd := &cobra.Command{
		Use:   "logout [flags] REGISTRY | --all",
		Short: "Remove stored registry credentials",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) == 1) {
				return usagef("logout: give either REGISTRY or --all")
			}
			server := ""
			if len(args) == 1 {
				server = args[0]
			}
			ro, err := reg.options()
			if err != nil {
				return err
			}
			if err := images.Logout(ro, server, all); err != nil {
				return err
			}
			if all {
				fmt.Fprintln(g.stdout, "Removed login credentials for all registries")
			} else {
				fmt.Fprintf(g.stdout, "Removed login credentials for %s\n", server)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&reg.authFile, "authfile", "", "auth file (default: $REGISTRY_AUTH_FILE, else ${XDG_RUNTIME_DIR}/containers/auth.json)")
	f.BoolVarP(&all, "all", "a", false, "remove the credentials of every registry")
	return cmd
}
