package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/builder-dev/builder/content"

	"github.com/builder-dev/builder/compress"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/types"
)

func TestRetryable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), false},
		{"unauthorized", docker.ErrUnauthorizedForCredentials{Err: errors.New("nope")}, false},
		{"auth text", errors.New("checking whether a blob exists: authentication required"), false},
		{"denied", errors.New("requested access to the resource is denied"), false},
		{"manifest unknown", errors.New("reading manifest v1: manifest unknown"), false},
		{"x509", errors.New("tls: failed to verify certificate: x509: certificate signed by unknown authority"), false},
		{"no such host", &net.DNSError{Err: "no such host", Name: "nowhere.invalid", IsNotFound: true}, false},
		{"500 status", docker.UnexpectedHTTPStatusError{StatusCode: 500}, true},
		{"404 status", docker.UnexpectedHTTPStatusError{StatusCode: 404}, false},
		{"429", fmt.Errorf("x: %w", docker.ErrTooManyRequests), true},
		{"500 text", errors.New("uploading layer: received unexpected HTTP status: 500 Internal Server Error"), true},
		{"StatusCode text", errors.New(`StatusCode: 503, "unavailable"`), true},
		{"reset", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true},
		{"refused", fmt.Errorf("dial: %w", syscall.ECONNREFUSED), true},
		{"unexpected EOF", fmt.Errorf("reading blob: %w", io.ErrUnexpectedEOF), true},
		{"EOF text", errors.New(`Post "https://r/v2/a/blobs/uploads/": EOF`), true},
		{"timeout", errors.New("net/http: TLS handshake timeout"), true},
		{"digest mismatch", errors.New("Digest did not match, expected sha256:aa, got sha256:bb"), false},
		{"size mismatch", fmt.Errorf("writing blob: %w", content.ErrMismatch), false},
		{"disk full", fmt.Errorf("storing blob: %w", syscall.ENOSPC), false},
		{"disk full text", errors.New("write /var/lib/x: no space left on device"), false},
		{"quota", fmt.Errorf("x: %w", syscall.EDQUOT), false},
		{"gzip bomb", fmt.Errorf("blob sha256:aa: %w", ErrLayerTooLarge), false},
		{"408", docker.UnexpectedHTTPStatusError{StatusCode: 408}, true},
		{"403", docker.UnexpectedHTTPStatusError{StatusCode: 403}, false},
		{"stalled", fmt.Errorf("reading blob: %w: no byte for 1m0s", ErrStalled), true},
		{"other", errors.New("invalid reference format"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Retryable(tc.err); got != tc.want {
				t.Errorf("Retryable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestRetrierDo(t *testing.T) {
	transient := errors.New("received unexpected HTTP status: 502 Bad Gateway")
	tests := []struct {
		name      string
		r         Retrier
		errs      []error // returned by successive tries; nil after the list
		wantTries int
		wantErr   bool
		wantSleep []time.Duration
	}{
		{"first try", Retrier{Max: 3}, nil, 1, false, nil},
		{"backoff", Retrier{Max: 3}, []error{transient, transient}, 3, false, []time.Duration{2 * time.Second, 4 * time.Second}},
		{"fixed delay", Retrier{Max: 3, Delay: time.Second}, []error{transient}, 2, false, []time.Duration{time.Second}},
		{"exhausted", Retrier{Max: 1}, []error{transient, transient, transient}, 2, true, []time.Duration{2 * time.Second}},
		{"permanent", Retrier{Max: 5}, []error{errors.New("unauthorized: bad password")}, 1, true, nil},
		{"no retries", Retrier{}, []error{transient}, 1, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var slept []time.Duration
			tc.r.sleep = func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }
			calls := 0
			tries, err := tc.r.Do(context.Background(), "op", func(context.Context) error {
				calls++
				if calls <= len(tc.errs) {
					return tc.errs[calls-1]
				}
				return nil
			})
			if tries != tc.wantTries || calls != tc.wantTries || (err != nil) != tc.wantErr {
				t.Errorf("tries %d calls %d err %v; want %d tries, error %v", tries, calls, err, tc.wantTries, tc.wantErr)
			}
			if fmt.Sprint(slept) != fmt.Sprint(tc.wantSleep) {
				t.Errorf("slept %v, want %v", slept, tc.wantSleep)
			}
		})
	}
}

func TestOpWrap(t *testing.T) {
	op := Op{Verb: "push to", Registry: "r.example:5000", Ref: "r.example:5000/app:v1"}
	err := op.wrap(errors.New("writing blob: EOF"), 4, []string{"sha256:abc"})
	want := "push to r.example:5000/app:v1 (registry r.example:5000): blob sha256:abc: failed after 4 tries: writing blob: EOF"
	if err.Error() != want {
		t.Errorf("got  %q\nwant %q", err, want)
	}
	// A digest the error already names is not repeated.
	err = op.wrap(errors.New("reading blob sha256:abc: 500"), 1, []string{"sha256:abc"})
	if strings.Count(err.Error(), "sha256:abc") != 1 {
		t.Errorf("digest repeated: %v", err)
	}
}

func TestParseCredsNeverLeaks(t *testing.T) {
	for _, s := range []string{"", ":secretpw", "user", "user:"} {
		if _, err := ParseCreds(s); err == nil || (s != "" && strings.Contains(err.Error(), "secretpw")) {
			t.Errorf("ParseCreds(%q) = %v", s, err)
		}
	}
	a, err := ParseCreds("user:pa:ss")
	if err != nil || a.Username != "user" || a.Password != "pa:ss" {
		t.Errorf("ParseCreds: %+v %v", a, err)
	}
}

func TestSystemContext(t *testing.T) {
	no := false
	dir := t.TempDir()
	sys, err := Options{TLSVerify: &no, CertDir: dir, Creds: "u:p", AuthFile: "/x/auth.json"}.SystemContext(nil, filepath.Join(dir, "bic"))
	if err != nil {
		t.Fatal(err)
	}
	if sys.DockerInsecureSkipTLSVerify != types.OptionalBoolTrue || sys.DockerCertPath != dir ||
		sys.DockerAuthConfig.Password != "p" || sys.AuthFilePath != "/x/auth.json" || sys.BlobInfoCacheDir != filepath.Join(dir, "bic") {
		t.Errorf("unexpected system context: %+v", sys)
	}
	sys, _ = Options{}.SystemContext(nil, "")
	if sys.DockerInsecureSkipTLSVerify != types.OptionalBoolUndefined {
		t.Error("--tls-verify unset must leave registries.conf in charge")
	}
	if _, err := (Options{CertDir: "/does/not/exist"}).SystemContext(nil, ""); err == nil {
		t.Error("missing --cert-dir accepted")
	}
}

func TestAuthKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"quay.io", "quay.io"},
		{"https://127.0.0.1:5000/", "127.0.0.1:5000"},
		{"docker://r.example/team", "r.example/team"},
		{"", ""},
	}
	for _, tc := range tests {
		got, err := AuthKey(tc.in)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("AuthKey(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestVariants(t *testing.T) {
	blobs, err := content.OpenStore(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := OpenVariants(filepath.Join(t.TempDir(), "variants"), blobs)
	if err != nil {
		t.Fatal(err)
	}
	diff := digest.FromString("tar")
	d, n, err := blobs.Put(strings.NewReader("gzipped"), "")
	if err != nil {
		t.Fatal(err)
	}
	gz := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: d, Size: n}
	if _, ok := v.Lookup(diff, compress.Gzip); ok {
		t.Fatal("lookup before record")
	}
	if err := v.Record(diff, gz); err != nil {
		t.Fatal(err)
	}
	if got, ok := v.Lookup(diff, compress.Gzip); !ok || got.Digest != d || got.Size != n {
		t.Errorf("lookup = %+v, %v", got, ok)
	}
	if _, ok := v.Lookup(diff, compress.Zstd); ok {
		t.Error("zstd variant found for a gzip record")
	}
	// Uncompressed descriptors are not variants; a pruned blob is no hit.
	if err := v.Record(diff, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: diff}); err != nil {
		t.Error(err)
	}
	os.Remove(blobs.Path(d))
	if _, ok := v.Lookup(diff, compress.Gzip); ok {
		t.Error("lookup found a blob that is gone")
	}
}

// fakeSource serves fixed blobs.
type fakeSource struct {
	types.ImageSource
	blobs map[digest.Digest][]byte
	gets  int
}

func (s *fakeSource) GetBlob(_ context.Context, bi types.BlobInfo, _ types.BlobInfoCache) (io.ReadCloser, int64, error) {
	s.gets++
	b := s.blobs[bi.Digest]
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

func TestTeeSource(t *testing.T) {
	blobs, _ := content.OpenStore(filepath.Join(t.TempDir(), "blobs"))
	good, bad := []byte("good blob"), []byte("bad blob")
	goodD, badD := digest.FromBytes(good), digest.FromString("something else")
	inner := &fakeSource{blobs: map[digest.Digest][]byte{goodD: good, badD: bad}}
	src := &teeSource{ImageSource: inner, blobs: blobs}
	ctx := context.Background()
	for _, d := range []digest.Digest{goodD, badD} {
		rc, _, err := src.GetBlob(ctx, types.BlobInfo{Digest: d, Size: -1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, rc)
		rc.Close()
	}
	if _, err := blobs.Stat(goodD); err != nil {
		t.Errorf("verified blob not kept: %v", err)
	}
	if _, err := blobs.Stat(badD); err == nil {
		t.Error("blob with the wrong content kept")
	}
	// A kept blob is served locally.
	rc, _, _ := src.GetBlob(ctx, types.BlobInfo{Digest: goodD, Size: int64(len(good))}, nil)
	b, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(b, good) || inner.gets != 2 {
		t.Errorf("third get: %q, %d fetches from the registry", b, inner.gets)
	}
}

// Each request has its own retry budget: an operation whose every request
// fails twice succeeds with --retry 2, and fails with --retry 1 once one
// request has failed twice.
func TestRetrierPerRequest(t *testing.T) {
	blobA, blobB := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	script := []error{
		errors.New("reading manifest v1: received unexpected HTTP status: 500"),
		errors.New("reading manifest v1: EOF"),
		errors.New("fetching blob " + blobA + ": received unexpected HTTP status: 500"),
		fmt.Errorf("fetching blob %s: %w", blobA, io.ErrUnexpectedEOF),
		errors.New("fetching blob " + blobB + ": received unexpected HTTP status: 500"),
		fmt.Errorf("fetching blob %s: %w", blobB, io.ErrUnexpectedEOF),
		errors.New("initiating layer upload to /v2/x in r: received unexpected HTTP status: 500"),
		errors.New("initiating layer upload to /v2/x in r: connection reset by peer"),
	}
	for _, tc := range []struct {
		max       int
		wantTries int
		wantErr   bool
	}{{2, len(script) + 1, false}, {1, 2, true}} {
		calls := 0
		r := Retrier{Max: tc.max, sleep: func(context.Context, time.Duration) error { return nil }}
		tries, err := r.Do(context.Background(), "op", func(context.Context) error {
			calls++
			if calls <= len(script) {
				return script[calls-1]
			}
			return nil
		})
		if tries != tc.wantTries || (err != nil) != tc.wantErr {
			t.Errorf("max %d: %d tries, err %v; want %d tries, error %v", tc.max, tries, err, tc.wantTries, tc.wantErr)
		}
	}
	// A request that keeps failing still ends the operation.
	r := Retrier{Max: 3, sleep: func(context.Context, time.Duration) error { return nil }}
	tries, err := r.Do(context.Background(), "op", func(context.Context) error {
		return errors.New("fetching blob " + blobA + ": EOF")
	})
	if tries != 4 || err == nil {
		t.Errorf("a failing request: %d tries, %v", tries, err)
	}
}

// stallReader never yields a byte: its Read waits for its request's
// context, as a body read on a stalled connection does, and it notes a
// Close that comes while a Read is running.
type stallReader struct {
	ctx              context.Context
	closed           chan struct{}
	once             sync.Once
	reading          atomic.Bool
	closedDuringRead atomic.Bool
}

func (r *stallReader) Read([]byte) (int, error) {
	r.reading.Store(true)
	defer r.reading.Store(false)
	select {
	case <-r.ctx.Done():
		return 0, r.ctx.Err()
	case <-r.closed:
		return 0, errors.New("read on a closed body")
	}
}

func (r *stallReader) Close() error {
	if r.reading.Load() {
		r.closedDuringRead.Store(true)
	}
	r.once.Do(func() { close(r.closed) })
	return nil
}

// A stalled blob read ends with ErrStalled by cancelling its request, not
// by closing the stream under the running Read.
func TestGuardStall(t *testing.T) {
	for _, bi := range []types.BlobInfo{
		{},
		{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"},
		{MediaType: "application/vnd.oci.image.layer.v1.tar"},
	} {
		t.Run(bi.MediaType, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			r := &stallReader{ctx: ctx, closed: make(chan struct{})}
			g, err := Limits{StallTimeout: 20 * time.Millisecond}.Guard(r, bi, cancel)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := g.Read(make([]byte, 512)); !errors.Is(err, ErrStalled) {
				t.Errorf("stalled read: %v, want ErrStalled", err)
			}
			g.Close()
			if r.closedDuringRead.Load() {
				t.Error("the stream was closed while a Read was running")
			}
		})
	}
}
