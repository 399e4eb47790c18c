// The registry harness: Debian's docker-registry with TLS and htpasswd auth
// behind a fault-injecting proxy, for registry_test.go.
package tests

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testRegistry is Debian's docker-registry on 127.0.0.1 with TLS (a CA made
// here) and htpasswd auth, reached through a fault-injecting proxy.
type testRegistry struct {
	host    string // the proxy, host:port: what builder talks to
	certDir string // ca.crt, for --cert-dir
	user    string
	pass    string
	proxy   *faultProxy
}

var toolsOnce sync.Once

// ensureTools installs what the registry tests run, if missing: the tests
// must not skip for want of a tool.
func ensureTools(t *testing.T) {
	toolsOnce.Do(func() {
		need := map[string]string{"docker-registry": "docker-registry", "htpasswd": "apache2-utils", "skopeo": "skopeo"}
		var pkgs []string
		for bin, pkg := range need {
			if _, err := exec.LookPath(bin); err != nil {
				pkgs = append(pkgs, pkg)
			}
		}
		if len(pkgs) == 0 {
			return
		}
		exec.Command("apt-get", "update", "-qq").Run()
		cmd := exec.Command("apt-get", append([]string{"install", "-y", "-qq", "--no-install-recommends"}, pkgs...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("apt-get install %v: %v\n%s", pkgs, err, out)
		}
	})
	for _, bin := range []string{"docker-registry", "htpasswd", "skopeo"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is required and could not be installed", bin)
		}
	}
}

// writeCerts makes a CA and a certificate for 127.0.0.1/localhost signed
// by it; it returns the CA pool and the server key pair.
func writeCerts(t *testing.T, dir string) (*x509.CertPool, tls.Certificate, string, string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "builder test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	os.WriteFile(certFile, certPEM, 0o644)
	os.WriteFile(keyFile, keyPEM, 0o600)
	os.MkdirAll(filepath.Join(dir, "certs"), 0o755)
	os.WriteFile(filepath.Join(dir, "certs", "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, pair, certFile, keyFile
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startRegistry starts docker-registry and the proxy in front of it; both
// stop when the test ends.
func startRegistry(t *testing.T) *testRegistry {
	ensureTools(t)
	dir := t.TempDir()
	pool, pair, certFile, keyFile := writeCerts(t, dir)
	r := &testRegistry{certDir: filepath.Join(dir, "certs"), user: "builder", pass: "s3cret-Pa55"}
	hp := filepath.Join(dir, "htpasswd")
	out, err := exec.Command("htpasswd", "-Bbn", r.user, r.pass).Output()
	if err != nil {
		t.Fatalf("htpasswd: %v", err)
	}
	os.WriteFile(hp, out, 0o644)
	addr := freePort(t)
	conf := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: builder-test-secret
  tls:
    certificate: %s
    key: %s
auth:
  htpasswd:
    realm: builder-test
    path: %s
`, filepath.Join(dir, "data"), addr, certFile, keyFile, hp)
	cf := filepath.Join(dir, "config.yml")
	os.WriteFile(cf, []byte(conf), 0o644)
	cmd := exec.Command("docker-registry", "serve", cf)
	logf, _ := os.Create(filepath.Join(dir, "registry.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for i := 0; ; i++ {
		resp, err := client.Get("https://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				break
			}
		}
		if i == 100 {
			b, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
			t.Fatalf("registry did not come up: %v\n%s", err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.proxy = startProxy(t, addr, pool, pair, r.user, r.pass)
	r.host = r.proxy.addr
	return r
}

// fault is one injected failure: it fires once, on the first request
// that matches.
type fault struct {
	match  func(*http.Request) bool
	action string // "drop", "reset", "500", "truncate", "size-3", "size+4096", "stall", "otherhost"
}

// faultProxy forwards to the registry, logs every request, injects faults
// from its schedule, can corrupt one blob, and can front the registry with
// bearer-token auth (its own token endpoint, checking the same password).
type faultProxy struct {
	addr     string
	mu       sync.Mutex
	log      []string // "METHOD PATH?QUERY"
	hosts    []string // the Host of each request, in order
	schedule []fault
	fired    int
	corrupt  string // blob digest served with flipped bytes
	bearer   bool
	// twice makes every distinct request (method and path, upload
	// sessions folded) fail twice: a 500, then a reset, then pass.
	twice map[string]int
}

func startProxy(t *testing.T, upstream string, pool *x509.CertPool, pair tls.Certificate, user, pass string) *faultProxy {
	p := &faultProxy{addr: freePort(t)}
	target, _ := url.Parse("https://" + upstream)
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host // the registry builds Location URLs from it: keep them on the proxy
			if p.isBearer() {
				r.Out.SetBasicAuth(user, pass)
			}
		},
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		ErrorLog:      log0(),
		FlushInterval: -1,
	}
	rp.ModifyResponse = func(resp *http.Response) error {
		req := resp.Request
		if p.corruptBlob(req) && resp.StatusCode == http.StatusOK {
			resp.Body = &flipReader{r: resp.Body}
		}
		a, _ := req.Context().Value(actionKey{}).(string)
		if a == "truncate" && resp.ContentLength > 1 {
			resp.Body = &truncReader{r: resp.Body, left: resp.ContentLength / 2}
		}
		if delta, ok := strings.CutPrefix(a, "size"); ok && resp.StatusCode == http.StatusOK {
			return lieAboutSizes(resp, delta)
		}
		if loc := resp.Header.Get("Location"); a == "otherhost" && loc != "" {
			// The same proxy under another name: another host to a client.
			resp.Header.Set("Location", strings.Replace(loc, "://127.0.0.1:", "://localhost:", 1))
		}
		return nil
	}
	srv := &http.Server{
		Addr:         p.addr,
		TLSConfig:    &tls.Config{Certificates: []tls.Certificate{pair}},
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}, // HTTP/1.1: hijack works
		ErrorLog:     log0(),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.serve(w, r, rp, user, pass)
		}),
	}
	ln, err := tls.Listen("tcp", p.addr, srv.TLSConfig)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return p
}

type actionKey struct{}

func (p *faultProxy) serve(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy, user, pass string) {
	p.mu.Lock()
	p.log = append(p.log, r.Method+" "+r.URL.RequestURI())
	p.hosts = append(p.hosts, r.Host)
	action := ""
	if p.twice != nil {
		path := r.URL.Path
		if i := strings.Index(path, "/blobs/uploads/"); i >= 0 {
			path = path[:i] + "/blobs/uploads/"
		}
		k := r.Method + " " + path
		p.twice[k]++
		switch p.twice[k] {
		case 1:
			action = "500"
		case 2:
			action = "reset"
		}
	}
	for i, f := range p.schedule {
		if f.match(r) {
			action = f.action
			p.schedule = append(p.schedule[:i:i], p.schedule[i+1:]...)
			p.fired++
			break
		}
	}
	bearer := p.bearer
	p.mu.Unlock()
	if bearer {
		if r.URL.Path == "/token" {
			if u, pw, ok := r.BasicAuth(); !ok || u != user || pw != pass {
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}`, http.StatusUnauthorized)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"token":"test-token","expires_in":300}`)
			return
		}
		if r.Header.Get("Authorization") != "Bearer test-token" {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="https://%s/token",service="test"`, p.addr))
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}`, http.StatusUnauthorized)
			return
		}
	}
	switch action {
	case "drop", "reset":
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		if tc, ok := conn.(*tls.Conn); ok && action == "reset" {
			if c, ok := tc.NetConn().(*net.TCPConn); ok {
				c.SetLinger(0) // close with RST
			}
		}
		conn.Close()
		return
	case "500":
		http.Error(w, "injected failure", http.StatusInternalServerError)
		return
	case "stall":
		// Headers, then silence: a transfer that stops moving.
		w.Header().Set("Content-Length", "1000000")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Minute):
		}
		return
	}
	rp.ServeHTTP(w, r.WithContext(contextWith(r, action)))
}

func (p *faultProxy) firedN() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fired
}

func (p *faultProxy) isBearer() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bearer
}

func (p *faultProxy) corruptBlob(r *http.Request) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.corrupt != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+p.corrupt)
}

// mark returns the log position; since returns the requests after it.
func (p *faultProxy) mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.log)
}

// hostsSince returns the Host of each request after mark m.
func (p *faultProxy) hostsSince(m int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.hosts[m:]...)
}

func (p *faultProxy) since(m int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.log[m:]...)
}

func (p *faultProxy) set(schedule []fault, corrupt string, bearer bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.schedule, p.corrupt, p.bearer, p.fired, p.twice = schedule, corrupt, bearer, 0, nil
}

// failTwice makes every request fail twice from now on (until set).
func (p *faultProxy) failTwice() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.twice = map[string]int{}
}

func count(reqs []string, pred func(method, uri string) bool) int {
	n := 0
	for _, r := range reqs {
		m, u, _ := strings.Cut(r, " ")
		if pred(m, u) {
			n++
		}
	}
	return n
}

// uploads counts blob uploads started (POST .../blobs/uploads/) that are
// not cross-repository mounts.
func uploads(reqs []string) int {
	return count(reqs, func(m, u string) bool {
		return m == "POST" && strings.Contains(u, "/blobs/uploads/") && !strings.Contains(u, "mount=")
	})
}

// blobGets counts blob downloads.
func blobGets(reqs []string) int {
	return count(reqs, func(m, u string) bool { return m == "GET" && strings.Contains(u, "/blobs/sha256:") })
}

type truncReader struct {
	r    io.ReadCloser
	left int64
}

func (t *truncReader) Read(b []byte) (int, error) {
	if t.left <= 0 {
		return 0, io.ErrUnexpectedEOF // the proxy aborts: the client sees a short body
	}
	if int64(len(b)) > t.left {
		b = b[:t.left]
	}
	n, err := t.r.Read(b)
	t.left -= int64(n)
	return n, err
}

func (t *truncReader) Close() error { return t.r.Close() }

type flipReader struct{ r io.ReadCloser }

func (f *flipReader) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	for i := range n {
		b[i] ^= 0x55
	}
	return n, err
}

func (f *flipReader) Close() error { return f.r.Close() }

func contextWith(r *http.Request, action string) context.Context {
	return context.WithValue(r.Context(), actionKey{}, action)
}

// log0 silences the proxy's server log (aborted bodies are on purpose).
func log0() *log.Logger { return log.New(io.Discard, "", 0) }

// lieAboutSizes rewrites a manifest so that its last layer's size is off
// by delta ("-3", "+4096") while its digest stays true: a registry whose
// descriptors contradict its blobs.
func lieAboutSizes(resp *http.Response, delta string) error {
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return err
	}
	n, _ := strconv.Atoi(delta)
	if layers, ok := m["layers"].([]any); ok && len(layers) > 0 {
		l := layers[len(layers)-1].(map[string]any)
		l["size"] = l["size"].(float64) + float64(n)
	}
	out, err := json.Marshal(m)
	if err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(out))
	resp.ContentLength = int64(len(out))
	resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
	resp.Header.Del("Docker-Content-Digest")
	return nil
}
