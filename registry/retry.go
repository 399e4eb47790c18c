package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/builder-dev/builder/content"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
)

// Retrier retries registry operations that failed for a transient reason.
type Retrier struct {
	Max   int           // further tries after the first, per request
	Delay time.Duration // fixed delay; 0: 2s, 4s, 8s... (capped at maxBackoff)
	Log   *slog.Logger  // receives one line per retry; nil: silent
	// Stall abandons (and retries) a copy in which no blob moved a byte
	// for this long; 0: DefaultStallTimeout.
	Stall time.Duration
	// sleep is time.Sleep with cancellation, replaceable in tests.
	sleep func(context.Context, time.Duration) error
}

const (
	firstBackoff = 2 * time.Second
	maxBackoff   = 30 * time.Second
)

// Do runs op until it succeeds or fails for a reason a retry cannot fix.
// An operation is many requests (a manifest, each blob, each step of an
// upload), and each has its own budget: a failure is charged to the
// request it names (requestKey), and op gives up when one request has
// failed r.Max+1 times, not when the operation has. Requests that
// succeeded are cheap to repeat (containers/image skips blobs already in
// place and resumes downloads). It returns op's last error and the number
// of tries made.
func (r Retrier) Do(ctx context.Context, what string, op func(ctx context.Context) error) (int, error) {
	sleep := r.sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	failures := map[string]int{}
	for try := 1; ; try++ {
		err := op(ctx)
		if err == nil || !Retryable(err) || ctx.Err() != nil {
			return try, err
		}
		key := requestKey(err)
		failures[key]++
		if failures[key] > r.Max || try >= maxTries(r.Max) {
			return try, err
		}
		d := r.delay(failures[key])
		if r.Log != nil {
			r.Log.Warn("retrying after a transient failure", "operation", what, "request", key,
				"try", failures[key], "of", r.Max+1, "delay", d, "error", err)
		}
		if serr := sleep(ctx, d); serr != nil {
			return try, err
		}
	}
}

// maxTries bounds the tries of one operation whatever its requests do:
// every request of a large image may fail up to its budget, but not
// forever.
func maxTries(perRequest int) int { return (perRequest + 1) * 64 }

var (
	digestText = regexp.MustCompile(`sha256:[0-9a-f]{64}`)
	// requestPhases name the request a containers/image error is about,
	// from the words it wraps errors with.
	requestPhases = []struct {
		re   *regexp.Regexp
		name string
	}{
		{regexp.MustCompile(`pinging container registry`), "GET ping"},
		{regexp.MustCompile(`initiating layer upload|determining upload URL|mounting sha256`), "POST upload"},
		{regexp.MustCompile(`uploading layer chunked`), "PATCH upload"},
		{regexp.MustCompile(`uploading layer to`), "PUT upload"},
		{regexp.MustCompile(`checking whether a blob`), "HEAD blob"},
		{regexp.MustCompile(`uploading manifest|writing manifest|PutManifest`), "PUT manifest"},
		{regexp.MustCompile(`(?i)manifest`), "GET manifest"},
		{regexp.MustCompile(`(?i)token|auth`), "GET auth"},
		{regexp.MustCompile(`(?i)blob|layer`), "GET blob"},
	}
)

// requestKey names the request an error is about, the same way whether
// containers/image reports it as a failed HTTP exchange or in its own
// words: method, kind of endpoint and the blob concerned, if named
// ("PATCH upload", "GET blob sha256:...", "GET manifest").
func requestKey(err error) string {
	msg := err.Error()
	key := ""
	var ue *url.Error
	if errors.As(err, &ue) {
		path := ue.URL
		if u, perr := url.Parse(ue.URL); perr == nil {
			path = u.Path
		}
		key = strings.ToUpper(ue.Op) + " " + endpointKind(path)
	} else {
		key = "request"
		for _, p := range requestPhases {
			if p.re.MatchString(msg) {
				key = p.name
				break
			}
		}
	}
	if d := digestText.FindString(msg); d != "" {
		key += " " + d
	}
	return key
}

// endpointKind classifies a registry API path.
func endpointKind(path string) string {
	switch {
	case strings.Contains(path, "/blobs/uploads/"):
		return "upload"
	case strings.Contains(path, "/blobs/"):
		return "blob"
	case strings.Contains(path, "/manifests/"):
		return "manifest"
	case strings.TrimSuffix(path, "/") == "/v2":
		return "ping"
	}
	return "auth"
}

func (r Retrier) delay(try int) time.Duration {
	if r.Delay > 0 {
		return r.Delay
	}
	d := firstBackoff << (try - 1)
	if d > maxBackoff || d <= 0 {
		d = maxBackoff
	}
	return d
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

var (
	// permanentText marks failures no retry can fix: bad credentials,
	// permissions, missing images, TLS trust.
	permanentText = regexp.MustCompile(`(?i)unauthorized|authentication required|invalid username/password|denied|forbidden|manifest unknown|name unknown|not found|x509:|certificate|no such host|short-name|no space left|disk quota|did not match|does not match|larger than --max-layer-size`)
	// transientText marks failures worth another try when the error value
	// itself was flattened to text somewhere in containers/image.
	transientText = regexp.MustCompile(`(?i)status(code)?:? ?(5\d\d|429|408)|\b(500|502|503|504|408) |connection reset|broken pipe|unexpected eof|\beof\b|timeout|timed out|tls handshake|server closed|connection refused|http2:|blob upload unknown|too many requests|stalled`)
)

// Retryable reports whether err may go away on another try: 5xx, 408 and
// 429 answers, resets, refused connections, timeouts, stalls and truncated
// bodies. Bad credentials and other 4xx answers are final, so a wrong
// password fails at once instead of hammering the registry; so are a full
// disk, a blob that is not what its digest or size says (the registry
// would only send it again) and a layer over --max-layer-size.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, content.ErrMismatch) || errors.Is(err, ErrLayerTooLarge) {
		return false
	}
	var unauth docker.ErrUnauthorizedForCredentials
	if errors.As(err, &unauth) {
		return false
	}
	var status docker.UnexpectedHTTPStatusError
	if errors.As(err, &status) {
		return status.StatusCode >= 500 || status.StatusCode == 429 || status.StatusCode == 408
	}
	if errors.Is(err, docker.ErrTooManyRequests) {
		return true
	}
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostErr) {
		return false
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return !dnsErr.IsNotFound
	}
	msg := err.Error()
	if permanentText.MatchString(msg) {
		return false
	}
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED),
		errors.Is(err, context.DeadlineExceeded):
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	return transientText.MatchString(msg)
}

// Op names a registry operation for error messages.
type Op struct {
	Verb     string // "push", "pull"
	Registry string // host[:port]
	Ref      string // the reference as the user wrote it
}

// Copy runs copy.Image from src to dst with r's retries. Blobs already in
// place are not sent again on a later try (containers/image checks the
// destination first), and interrupted downloads resume with range
// requests, so a retry continues where the last try stopped. The final
// error names the operation, the registry and the blobs that failed.
func Copy(ctx context.Context, r Retrier, op Op, dst, src types.ImageReference, o copy.Options) ([]byte, error) {
	policy, err := signature.NewPolicyContext(&signature.Policy{
		Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()},
	})
	if err != nil {
		return nil, err
	}
	defer policy.Destroy() //nolint:errcheck // in-memory policy

	var copied []byte
	var failed []string
	stall := r.Stall
	if stall <= 0 {
		stall = DefaultStallTimeout
	}
	tries, err := r.Do(ctx, op.Verb+" "+op.Ref, func(ctx context.Context) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		t := newTracker(stall, cancel)
		opts := o
		opts.Progress, opts.ProgressInterval = t.ch, time.Second
		var err error
		copied, err = copy.Image(ctx, policy, dst, src, &opts)
		failed = t.stop()
		if err != nil && t.stalled.Load() {
			err = fmt.Errorf("%w: no byte moved for %s: %v", ErrStalled, stall, err)
		}
		return err
	})
	if err != nil {
		return nil, op.wrap(err, tries, failed)
	}
	return copied, nil
}

// Do runs fn with r's retries; the final error names op.
func (op Op) Do(ctx context.Context, r Retrier, fn func(context.Context) error) error {
	tries, err := r.Do(ctx, op.Verb+" "+op.Ref, fn)
	if err != nil {
		return op.wrap(err, tries, nil)
	}
	return nil
}

// wrap phrases err for the user.
func (op Op) wrap(err error, tries int, blobs []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s (registry %s)", op.Verb, op.Ref, op.Registry)
	var named []string
	for _, d := range blobs {
		if !strings.Contains(err.Error(), d) {
			named = append(named, d)
		}
	}
	if len(named) > 0 {
		fmt.Fprintf(&b, ": blob %s", strings.Join(named, ", "))
	}
	if tries > 1 {
		fmt.Fprintf(&b, ": failed after %d tries", tries)
	}
	return fmt.Errorf("%s: %w", b.String(), err)
}

// tracker follows containers/image's progress events to learn which blobs
// started and never finished (the ones a failure is about), and cancels
// the copy when blobs are in flight but none moved for the stall time.
type tracker struct {
	ch      chan types.ProgressProperties
	done    chan struct{}
	mu      sync.Mutex
	open    map[digest.Digest]bool
	last    time.Time // of the last progress event
	stalled atomic.Bool
}

func newTracker(stall time.Duration, cancel func()) *tracker {
	t := &tracker{ch: make(chan types.ProgressProperties), done: make(chan struct{}), open: map[digest.Digest]bool{}, last: time.Now()}
	go func() {
		tick := time.NewTicker(min(stall/4, time.Second))
		defer tick.Stop()
		for {
			select {
			case <-t.done:
				return
			case <-tick.C:
				t.mu.Lock()
				stuck := len(t.open) > 0 && time.Since(t.last) > stall
				t.mu.Unlock()
				if stuck {
					t.stalled.Store(true)
					cancel()
					return
				}
			}
		}
	}()
	go func() {
		defer close(t.done)
		for p := range t.ch {
			t.mu.Lock()
			t.last = time.Now()
			switch p.Event {
			case types.ProgressEventNewArtifact:
				t.open[p.Artifact.Digest] = true
			case types.ProgressEventDone, types.ProgressEventSkipped:
				delete(t.open, p.Artifact.Digest)
			}
			t.mu.Unlock()
		}
	}()
	return t
}

// stop ends tracking (copy.Image has returned, so nothing sends any more)
// and returns the blobs still open, sorted.
func (t *tracker) stop() []string {
	close(t.ch)
	<-t.done
	var out []string
	for d := range t.open {
		out = append(out, d.String())
	}
	slices.Sort(out)
	return out
}

// PushOp is the operation and the system context of a push to ref: to a
// registry, errors name the registry and the reference, and the context
// is pinned to that registry (credentials never follow a redirect to
// another host); other transports keep sys, named by display.
func PushOp(ref types.ImageReference, display string, sys *types.SystemContext) (Op, *types.SystemContext) {
	op := Op{Verb: "push to", Ref: display}
	if named := ref.DockerReference(); named != nil && ref.Transport().Name() == "docker" {
		op.Registry, op.Ref = reference.Domain(named), named.String()
		sys = PinnedTo(sys, op.Registry)
	}
	return op, sys
}
