// Package registry holds what builder adds on top of containers/image for
// talking to registries: the shared flags turned into a SystemContext,
// retries with backoff and error classification, pulls into the local store
// that also keep the compressed blobs, the diffID → compressed blob index
// that makes every layer compressed only once, and login/logout.
package registry

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.podman.io/image/v5/types"
)

// Options are the registry flags shared by bud, push and pull.
type Options struct {
	// TLSVerify, when set, overrides registries.conf: false skips TLS
	// verification and allows plain HTTP (--tls-verify=false).
	TLSVerify *bool
	// CertDir holds CA certificates (*.crt) and client certificates
	// (*.cert, *.key) for every registry (--cert-dir).
	CertDir string
	// Creds is USER:PASSWORD (--creds); it wins over auth files.
	Creds string
	// AuthFile is the auth.json to read and write (--authfile, else
	// $REGISTRY_AUTH_FILE, else containers/image's default).
	AuthFile string
	// Retry is how many times a failed operation is tried again (--retry).
	Retry int
	// RetryDelay is the fixed delay between tries; 0 means exponential
	// backoff from 2s (--retry-delay), as in podman.
	RetryDelay time.Duration
	// StallTimeout abandons and retries a transfer that moved no byte for
	// this long (--stall-timeout; 0: DefaultStallTimeout).
	StallTimeout time.Duration
	// MaxLayerSize refuses a layer larger uncompressed (--max-layer-size;
	// 0: DefaultMaxLayerSize).
	MaxLayerSize int64
}

// DefaultRetry is podman's default number of retries.
const DefaultRetry = 3

// SystemContext returns a copy of base (which may be nil) configured by o.
// cacheDir, when set, is where the persistent blob-info cache lives (under
// the store, so that knowledge of compressed digests and blob locations
// follows the store).
func (o Options) SystemContext(base *types.SystemContext, cacheDir string) (*types.SystemContext, error) {
	var sys types.SystemContext
	if base != nil {
		sys = *base
	}
	if o.TLSVerify != nil {
		sys.DockerInsecureSkipTLSVerify = types.NewOptionalBool(!*o.TLSVerify)
		sys.OCIInsecureSkipTLSVerify = !*o.TLSVerify
		sys.DockerDaemonInsecureSkipTLSVerify = !*o.TLSVerify
	}
	if o.CertDir != "" {
		if _, err := os.Stat(o.CertDir); err != nil {
			return nil, fmt.Errorf("--cert-dir: %w", err)
		}
		sys.DockerCertPath = o.CertDir
		sys.OCICertPath = o.CertDir
	}
	authFile := o.AuthFile
	if authFile == "" {
		authFile = os.Getenv("REGISTRY_AUTH_FILE")
	}
	if authFile != "" {
		sys.AuthFilePath = authFile
	}
	if o.Creds != "" {
		auth, err := ParseCreds(o.Creds)
		if err != nil {
			return nil, err
		}
		sys.DockerAuthConfig = &auth
	}
	if cacheDir != "" && sys.BlobInfoCacheDir == "" {
		if err := os.MkdirAll(cacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("blob info cache: %w", err)
		}
		sys.BlobInfoCacheDir = cacheDir
	}
	if sys.DockerRegistryUserAgent == "" {
		sys.DockerRegistryUserAgent = "builder"
	}
	return &sys, nil
}

// ParseCreds parses USER:PASSWORD. The error never repeats the value, so a
// password cannot leak into logs.
func ParseCreds(s string) (types.DockerAuthConfig, error) {
	user, pass, ok := strings.Cut(s, ":")
	switch {
	case user == "":
		return types.DockerAuthConfig{}, errors.New("--creds: empty user name (want USER:PASSWORD)")
	case !ok || pass == "":
		return types.DockerAuthConfig{}, errors.New("--creds: no password given (want USER:PASSWORD)")
	}
	return types.DockerAuthConfig{Username: user, Password: pass}, nil
}

// Retrier returns the retry policy of o.
func (o Options) Retrier() Retrier {
	return Retrier{Max: o.Retry, Delay: o.RetryDelay, Stall: o.StallTimeout}
}

// Limits are the transfer guards o asks for.
func (o Options) Limits() Limits {
	return Limits{MaxLayerSize: o.MaxLayerSize, StallTimeout: o.StallTimeout}
}
