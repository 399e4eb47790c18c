package registry

// Credentials go only to the registry they are for. containers/image sends
// a registry's credentials with every request of its session, also to an
// upload Location on another host (the Distribution spec allows those).
// It consults the transport's proxy function for every request it makes,
// so a push's SystemContext pins it to its registry there: a request to
// another host fails before a byte, credentials included, is sent. The one
// exception is the token service a registry names in its challenge (Docker
// Hub's is auth.docker.io), recognised by the token request's query
// (service=, scope=), which is where credentials are meant to go.

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"go.podman.io/image/v5/types"
)

// ErrOtherHost: the registry asked for a request to another host.
var ErrOtherHost = errors.New("builder sends a registry's credentials only to that registry")

// PinnedTo returns a copy of sys whose registry requests may go only to
// host (host[:port], as in a reference), keeping its proxy settings.
func PinnedTo(sys *types.SystemContext, host string) *types.SystemContext {
	var out types.SystemContext
	if sys != nil {
		out = *sys
	}
	next := func(u *url.URL) (*url.URL, error) {
		return http.ProxyFromEnvironment(&http.Request{URL: u})
	}
	switch {
	case out.DockerProxy != nil:
		next = out.DockerProxy
	case out.DockerProxyURL != nil:
		p := out.DockerProxyURL
		next = func(*url.URL) (*url.URL, error) { return p, nil }
	}
	want := normalizeHost(host)
	out.DockerProxy = func(u *url.URL) (*url.URL, error) {
		q := u.Query()
		if normalizeHost(u.Host) != want && !q.Has("service") && !q.Has("scope") {
			return nil, fmt.Errorf("registry %s asked for a request to %s: %w; the push stops rather than send them there", host, u.Host, ErrOtherHost)
		}
		return next(u)
	}
	return &out
}

// normalizeHost lower-cases a host and drops the default HTTPS port and
// docker.io's alias, so one registry has one name.
func normalizeHost(h string) string {
	h = strings.ToLower(h)
	if host, port, err := net.SplitHostPort(h); err == nil && port == "443" {
		h = host
	}
	switch h {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		return "docker.io"
	}
	return h
}
