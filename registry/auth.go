package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/docker/config"
	"go.podman.io/image/v5/types"
)

// AuthKey turns what a user gives login/logout ("https://host:5000/",
// "docker://host/ns", "host") into the auth.json key containers/image
// uses: a registry host, optionally with a repository namespace.
func AuthKey(server string) (string, error) {
	s := server
	for _, p := range []string{"docker://", "https://", "http://"} {
		s = strings.TrimPrefix(s, p)
	}
	s = strings.TrimSuffix(s, "/")
	if s == "" {
		return "", errors.New("no registry given")
	}
	if strings.ContainsAny(s, "@") || strings.Contains(strings.SplitN(s, "/", 2)[0], " ") {
		return "", fmt.Errorf("invalid registry %q", server)
	}
	if strings.Contains(s, "/") {
		if _, err := reference.ParseNormalizedNamed(s); err != nil {
			return "", fmt.Errorf("invalid registry %q: %w", server, err)
		}
	}
	return s, nil
}

// Login checks the credentials against the registry (bearer-token and
// basic auth, as the registry asks) and stores them in the auth file of sys
// (auth.json, podman's format). It returns where they were written. A
// rejected password is reported at once, without retries; the password is
// never part of an error.
func Login(ctx context.Context, sys *types.SystemContext, r Retrier, server, user, password string) (string, error) {
	key, err := AuthKey(server)
	if err != nil {
		return "", err
	}
	if user == "" || password == "" {
		return "", errors.New("login needs a user name and a password")
	}
	host := strings.SplitN(key, "/", 2)[0]
	tries, err := r.Do(ctx, "login "+host, func(ctx context.Context) error {
		return docker.CheckAuth(ctx, sys, user, password, host)
	})
	if err != nil {
		var unauth docker.ErrUnauthorizedForCredentials
		if errors.As(err, &unauth) {
			return "", fmt.Errorf("login to %s as %s: the registry rejected the user name or password", host, user)
		}
		return "", Op{Verb: "login", Registry: host, Ref: host}.wrap(err, tries, nil)
	}
	where, err := config.SetCredentials(sys, key, user, password)
	if err != nil {
		return "", fmt.Errorf("storing credentials for %s: %w", key, err)
	}
	return where, nil
}

// Logout removes the stored credentials for server, or all of them.
func Logout(sys *types.SystemContext, server string, all bool) error {
	if all {
		return config.RemoveAllAuthentication(sys)
	}
	key, err := AuthKey(server)
	if err != nil {
		return err
	}
	if err := config.RemoveAuthentication(sys, key); err != nil {
		if errors.Is(err, config.ErrNotLoggedIn) {
			return fmt.Errorf("not logged in to %s", key)
		}
		return fmt.Errorf("logout from %s: %w", key, err)
	}
	return nil
}
