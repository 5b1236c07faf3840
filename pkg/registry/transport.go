package registry

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/net/http/httpproxy"
)

// operationBackoff is the backoff of go-containerregistry's operation-level
// retries: one more attempt of a whole upload unless retries are off.
func (o Options) operationBackoff() remote.Backoff {
	steps := 2
	if o.retries() == 0 {
		steps = 1
	}
	return remote.Backoff{Duration: o.retryDelay(), Factor: 2, Jitter: 0.2, Steps: steps, Cap: maxRetryDelay}
}

// roundTripper builds the transport stack below go-containerregistry's
// authentication: retries, then stall detection (per attempt), then Stats
// counting, then the per-host TLS and proxy transport.
func (o Options) roundTripper() http.RoundTripper {
	base, err := newHostRouter(o)
	var rt http.RoundTripper
	if err != nil {
		rt = errTransport{err}
	} else {
		rt = base
	}
	if o.Stats != nil {
		rt = &statsTransport{inner: rt, s: o.Stats}
	}
	if d := o.stallTimeout(); d > 0 {
		rt = &stallTransport{inner: rt, timeout: d}
	}
	return &retryTransport{inner: rt, retries: o.retries(), delay: o.retryDelay(), maxManifest: o.maxManifestSize()}
}

// errTransport fails every request with err (a configuration error found
// while building the transport, e.g. an unreadable CertDir).
type errTransport struct{ err error }

func (t errTransport) RoundTrip(*http.Request) (*http.Response, error) { return nil, t.err }

// certsDirs are docker's and podman's per-registry certificate roots:
// <root>/<host[:port]>/{*.crt, *.cert, *.key}.
var certsDirs = []string{"/etc/containers/certs.d", "/etc/docker/certs.d"}

// hostRouter sends each request through the http.Transport whose TLS
// settings fit the request's host.
type hostRouter struct {
	o        Options
	proxy    func(*http.Request) (*url.URL, error)
	roots    *x509.CertPool // system pool plus CertDir, nil if CertDir is empty
	clients  []tls.Certificate
	verify   *http.Transport
	noVerify *http.Transport

	mu      sync.Mutex
	perHost map[string]*http.Transport // hosts with a certs.d directory
}

func newHostRouter(o Options) (*hostRouter, error) {
	r := &hostRouter{o: o, perHost: map[string]*http.Transport{}}
	proxyFunc := httpproxy.FromEnvironment().ProxyFunc()
	r.proxy = func(req *http.Request) (*url.URL, error) { return proxyFunc(req.URL) }
	if o.CertDir != "" {
		pool, certs, found, err := loadCertDir(o.CertDir, nil)
		if err != nil {
			return nil, err
		}
		if !found {
			if _, err := os.Stat(o.CertDir); err != nil {
				return nil, fmt.Errorf("certificate directory %s: %w", o.CertDir, err)
			}
		}
		r.roots, r.clients = pool, certs
	}
	r.verify = r.newTransport(&tls.Config{RootCAs: r.roots, Certificates: r.clients, MinVersion: tls.VersionTLS12})
	r.noVerify = r.newTransport(&tls.Config{InsecureSkipVerify: true, Certificates: r.clients}) //nolint:gosec // --tls-verify=false / --insecure-registry
	return r, nil
}

func (r *hostRouter) newTransport(cfg *tls.Config) *http.Transport {
	return &http.Transport{
		Proxy: r.proxy,
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:       cfg,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   50,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
	}
}

func (r *hostRouter) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Host
	if req.URL.Scheme == "http" && r.o.verifyForced() {
		closeBody(req)
		return nil, fmt.Errorf("refusing plain HTTP to %s: TLS verification is required (--tls-verify=true)", host)
	}
	if req.URL.Scheme == "https" && r.o.isInsecureListed(host) {
		return r.noVerify.RoundTrip(req)
	}
	if req.URL.Scheme == "https" {
		t, err := r.forHost(host)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		return t.RoundTrip(req)
	}
	return r.verify.RoundTrip(req)
}

// forHost returns the transport for host, with the CAs and client
// certificates of its certs.d directory if it has one.
func (r *hostRouter) forHost(host string) (*http.Transport, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.perHost[host]; ok {
		return t, nil
	}
	t := r.verify
	var pool = r.roots
	var certs = append([]tls.Certificate(nil), r.clients...)
	found := false
	for _, root := range certsDirs {
		dir := filepath.Join(root, host)
		if strings.Contains(host, "/") || strings.Contains(host, "..") {
			break
		}
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			continue
		}
		p, c, ok, err := loadCertDir(dir, pool)
		if err != nil {
			return nil, fmt.Errorf("registry %s: %w", host, err)
		}
		if ok {
			pool, certs, found = p, append(certs, c...), true
		}
	}
	if found {
		t = r.newTransport(&tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS12})
	}
	r.perHost[host] = t
	return t, nil
}

// loadCertDir adds dir's *.crt files to a copy of base (the system pool when
// base is nil) and loads its *.cert/*.key client pairs. found reports
// whether anything was loaded.
func loadCertDir(dir string, base *x509.CertPool) (*x509.CertPool, []tls.Certificate, bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, false, fmt.Errorf("reading certificate directory %s: %w", dir, err)
	}
	var pool *x509.CertPool
	if base != nil {
		pool = base.Clone()
	} else if pool, err = x509.SystemCertPool(); err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	var certs []tls.Certificate
	found := false
	for _, e := range entries {
		n := e.Name()
		p := filepath.Join(dir, n)
		switch {
		case strings.HasSuffix(n, ".crt"):
			pem, err := os.ReadFile(p)
			if err != nil {
				return nil, nil, false, fmt.Errorf("reading CA certificate %s: %w", p, err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, nil, false, fmt.Errorf("CA certificate %s: no PEM certificate found", p)
			}
			found = true
		case strings.HasSuffix(n, ".cert"):
			key := strings.TrimSuffix(p, ".cert") + ".key"
			c, err := tls.LoadX509KeyPair(p, key)
			if err != nil {
				return nil, nil, false, fmt.Errorf("client certificate %s (key %s): %w", p, key, err)
			}
			certs = append(certs, c)
			found = true
		}
	}
	return pool, certs, found, nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// retryTransport retries a request that failed in a way worth retrying:
// 408, 429, 500, 502, 503, 504, a connection reset, an unexpected EOF or a
// timeout. A request with a body is retried only when its body can be
// replayed (GetBody). Waits double from delay (with jitter) up to 30s; a
// 429's Retry-After is honoured within that bound. The context ends the
// waiting.
type retryTransport struct {
	inner   http.RoundTripper
	retries int
	delay   time.Duration
	// maxManifest bounds a manifest's body (0: DefaultMaxManifestSize).
	maxManifest int64
}

// retriedError marks an error that this transport already retried (or
// judged not worth retrying), so that no layer above retries it again.
type retriedError struct {
	err      error
	attempts int
}

func (e *retriedError) Error() string {
	if e.attempts > 1 {
		return fmt.Sprintf("%v (after %d attempts)", e.err, e.attempts)
	}
	return e.err.Error()
}

func (e *retriedError) Unwrap() error { return e.err }

var retryStatus = map[int]bool{
	http.StatusRequestTimeout:      true,
	http.StatusTooManyRequests:     true,
	http.StatusInternalServerError: true,
	http.StatusBadGateway:          true,
	http.StatusServiceUnavailable:  true,
	http.StatusGatewayTimeout:      true,
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.roundTrip(req)
	if err != nil || req.Method != http.MethodGet || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	switch kind, _ := classifyPath(originRequest(req).URL.Path); kind {
	case kindBlob:
		if t.retries != 0 {
			resp.Body = &resumingBody{t: t, req: req, body: resp.Body, total: resp.ContentLength}
		}
	case kindManifest:
		return t.wholeManifest(req, resp)
	}
	return resp, nil
}

// wholeManifest reads a manifest's body before handing the response on: a
// connection cut in the middle of it is retried like a failed request
// (a manifest is small and cannot be resumed by range like a blob).
func (t *retryTransport) wholeManifest(req *http.Request, resp *http.Response) (*http.Response, error) {
	limit := t.maxManifest
	if limit <= 0 {
		limit = DefaultMaxManifestSize
	}
	tooBig := func() error {
		return &retriedError{err: fmt.Errorf("%s: the manifest is larger than the %d bytes allowed (--max-manifest-size)", originRequest(req).URL.Redacted(), limit), attempts: 1}
	}
	for attempt := 0; ; attempt++ {
		if resp.ContentLength > limit {
			resp.Body.Close()
			return nil, tooBig()
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
		resp.Body.Close()
		if err == nil {
			if int64(len(body)) > limit {
				return nil, tooBig()
			}
			resp.Body = io.NopCloser(bytes.NewReader(body))
			resp.ContentLength = int64(len(body))
			return resp, nil
		}
		if attempt >= t.retries || !retryableError(err) || req.Context().Err() != nil {
			return nil, &retriedError{err: fmt.Errorf("reading the manifest: %w", err), attempts: attempt + 1}
		}
		timer := time.NewTimer(backoff(t.delay, attempt))
		select {
		case <-req.Context().Done():
			timer.Stop()
			return nil, &retriedError{err: req.Context().Err(), attempts: attempt + 1}
		case <-timer.C:
		}
		if resp, err = t.roundTrip(req.Clone(req.Context())); err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return resp, nil
		}
	}
}

// roundTrip sends req, retrying as the type's comment says.
func (t *retryTransport) roundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	hasBody := req.Body != nil && req.Body != http.NoBody
	replayable := !hasBody || req.GetBody != nil
	for attempt := 0; ; attempt++ {
		r := req
		if attempt > 0 {
			r = req.Clone(ctx)
			if hasBody {
				body, err := req.GetBody()
				if err != nil {
					return nil, &retriedError{err: fmt.Errorf("replaying request body: %w", err), attempts: attempt + 1}
				}
				r.Body = body
			}
		}
		resp, err := t.inner.RoundTrip(r)
		more := attempt < t.retries && replayable && ctx.Err() == nil
		if err != nil {
			if !more || !retryableError(err) {
				return nil, &retriedError{err: err, attempts: attempt + 1}
			}
		} else if !more || !retryStatus[resp.StatusCode] {
			return resp, nil
		}
		wait := backoff(t.delay, attempt)
		if resp != nil {
			if ra := retryAfter(resp); ra > wait {
				wait = min(ra, maxRetryDelay)
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			_ = resp.Body.Close()
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, &retriedError{err: ctx.Err(), attempts: attempt + 1}
		case <-timer.C:
		}
	}
}

// backoff is delay·2^attempt with ±20% jitter, at most maxRetryDelay.
func backoff(delay time.Duration, attempt int) time.Duration {
	d := delay
	for i := 0; i < attempt && d < maxRetryDelay; i++ {
		d *= 2
	}
	d = min(d, maxRetryDelay)
	jitter := time.Duration((rand.Float64()*0.4 - 0.2) * float64(d))
	return d + jitter
}

// retryAfter parses a Retry-After header (seconds or an HTTP date).
func retryAfter(resp *http.Response) time.Duration {
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t)
	}
	return 0
}

// retryableError reports whether a transport error is a transient network
// failure: a reset or aborted connection, an unexpected EOF, or a timeout
// that is not the caller's deadline. Refused connections, DNS failures and
// TLS errors are not retried: they do not go away in a second.
func retryableError(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return false
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.IsTimeout || dnsErr.IsTemporary
	}
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) {
		return false
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "connection reset") || strings.Contains(msg, "server sent GOAWAY") ||
		strings.Contains(msg, "broken pipe")
}

// operationRetryable is go-containerregistry's retry predicate: it restarts
// a whole blob upload or manifest put when the registry failed it in a
// restartable way (a temporary status our transport gave up on, a lost or
// invalid upload session, a range mismatch after a retried PATCH). Errors
// our transport already retried are not retried again.
func operationRetryable(err error) bool {
	if err == nil {
		return false
	}
	var te *transport.Error
	if errors.As(err, &te) {
		if te.StatusCode == http.StatusRequestedRangeNotSatisfiable {
			return true
		}
		for _, d := range te.Errors {
			if d.Code == transport.BlobUploadUnknownErrorCode || d.Code == transport.BlobUploadInvalidErrorCode {
				return true
			}
		}
		return te.Temporary()
	}
	var re *retriedError
	if errors.As(err, &re) {
		return false
	}
	return retryableError(err)
}

// resumingBody is the body of a blob GET that survives a connection reset
// or timeout in the middle: it asks again for the rest with a Range request
// (or, from a registry that ignores Range, for the whole blob, skipping what
// was read), at most t.retries times. Blobs are content-addressed and their
// digests are verified by the reader, so resuming cannot splice in other
// content unnoticed.
type resumingBody struct {
	t       *retryTransport
	req     *http.Request
	body    io.ReadCloser
	total   int64 // the blob's length from the first answer, or -1
	read    int64
	resumes int
	pending error
}

func (b *resumingBody) Read(p []byte) (int, error) {
	for {
		var n int
		var err error
		if b.pending != nil {
			err, b.pending = b.pending, nil
		} else {
			n, err = b.body.Read(p)
			b.read += int64(n)
		}
		if err == nil || err == io.EOF {
			return n, err
		}
		if n > 0 {
			// Hand over the data first; deal with the error next time.
			b.pending = err
			return n, nil
		}
		ctx := b.req.Context()
		if b.resumes >= b.t.retries || ctx.Err() != nil || !retryableError(err) {
			return 0, err
		}
		if rerr := b.resume(); rerr != nil {
			return 0, fmt.Errorf("%w (resuming at byte %d: %v)", err, b.read, rerr)
		}
	}
}

// resume replaces the broken body with one that continues at b.read.
func (b *resumingBody) resume() error {
	ctx := b.req.Context()
	b.resumes++
	_ = b.body.Close()
	timer := time.NewTimer(backoff(b.t.delay, b.resumes-1))
	select {
	case <-ctx.Done():
		timer.Stop()
		return ctx.Err()
	case <-timer.C:
	}
	r := b.req.Clone(context.WithValue(ctx, resumeKey{}, true))
	if b.total > b.read {
		// A closed range: some registries understand no other kind.
		r.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", b.read, b.total-1))
	} else {
		r.Header.Set("Range", fmt.Sprintf("bytes=%d-", b.read))
	}
	resp, err := b.t.roundTrip(r)
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusRequestedRangeNotSatisfiable {
		// The registry does not do ranges after all: ask for everything.
		_ = resp.Body.Close()
		r = b.req.Clone(context.WithValue(ctx, resumeKey{}, true))
		r.Header.Del("Range")
		if resp, err = b.t.roundTrip(r); err != nil {
			return err
		}
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		if cr := resp.Header.Get("Content-Range"); !strings.HasPrefix(cr, fmt.Sprintf("bytes %d-", b.read)) {
			_ = resp.Body.Close()
			return fmt.Errorf("unexpected Content-Range %q", cr)
		}
	case http.StatusOK:
		if _, err := io.CopyN(io.Discard, resp.Body, b.read); err != nil {
			_ = resp.Body.Close()
			return fmt.Errorf("skipping %d bytes already read: %w", b.read, err)
		}
	default:
		_ = resp.Body.Close()
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	b.body = resp.Body
	return nil
}

// resumeKey marks the context of a request that resumes a blob download,
// so that Stats does not count the blob twice.
type resumeKey struct{}

func (b *resumingBody) Close() error { return b.body.Close() }

// stallTransport fails a request that makes no progress for timeout: no
// answer once the request is sent, no byte of its body taken, no byte of
// the response body arriving. The failure is a stallError, a timeout that
// the retry layers retry (and that a download resumes after).
type stallTransport struct {
	inner   http.RoundTripper
	timeout time.Duration
}

// stallError is a request that made no progress for a while.
type stallError struct {
	what    string
	timeout time.Duration
}

func (e *stallError) Error() string {
	return fmt.Sprintf("%s: no progress for %s (stalled: less than %d KiB moved)", e.what, e.timeout, minProgress>>10)
}

// Timeout and Temporary make stallError a net.Error timeout.
func (e *stallError) Timeout() bool   { return true }
func (e *stallError) Temporary() bool { return true }

// minProgress is how many bytes count as progress: a request that moves
// fewer than this in a whole stall timeout is cut, so a registry that
// trickles a byte a second (or sends headers that slowly) cannot hold a
// build forever. At the default 2 minutes that is about 270 bytes/s; a
// response smaller than this must be complete within one timeout.
const minProgress = 32 << 10

// watchdog cancels a request when its timer runs out.
type watchdog struct {
	timer   *time.Timer
	cancel  context.CancelFunc
	timeout time.Duration
	fired   atomic.Bool
	done    atomic.Bool
	pending atomic.Int64 // bytes moved since the last restart
}

func (w *watchdog) fire() {
	if !w.done.Load() {
		w.fired.Store(true)
		w.cancel()
	}
}

// kick counts n bytes of progress and restarts the countdown once
// minProgress bytes have moved since the last restart.
func (w *watchdog) kick(n int) {
	if w.done.Load() || w.pending.Add(int64(n)) < minProgress {
		return
	}
	w.pending.Store(0)
	w.timer.Reset(w.timeout)
}

// stop ends the watch and releases the request's context.
func (w *watchdog) stop() {
	w.done.Store(true)
	w.timer.Stop()
	w.cancel()
}

func (t *stallTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	parent := req.Context()
	ctx, cancel := context.WithCancel(parent)
	wd := &watchdog{cancel: cancel, timeout: t.timeout}
	wd.timer = time.AfterFunc(t.timeout, wd.fire)
	r := req.WithContext(ctx)
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &kickingBody{rc: r.Body, wd: wd}
	}
	what := req.Method + " " + req.URL.Redacted()
	resp, err := t.inner.RoundTrip(r)
	if err != nil {
		wd.stop()
		if wd.fired.Load() && parent.Err() == nil {
			return nil, &stallError{what: what, timeout: t.timeout}
		}
		return nil, err
	}
	wd.kick(minProgress) // the response has come
	resp.Body = &watchedBody{rc: resp.Body, wd: wd, parent: parent, what: what}
	return resp, nil
}

// kickingBody is an upload body whose reads count as progress.
type kickingBody struct {
	rc io.ReadCloser
	wd *watchdog
}

func (b *kickingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.wd.kick(n)
	}
	return n, err
}

func (b *kickingBody) Close() error { return b.rc.Close() }

// watchedBody is a response body whose reads count as progress and whose
// failure after a stall says so.
type watchedBody struct {
	rc     io.ReadCloser
	wd     *watchdog
	parent context.Context
	what   string
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.wd.kick(n)
	}
	if err != nil && err != io.EOF && b.wd.fired.Load() && b.parent.Err() == nil {
		return n, &stallError{what: b.what, timeout: b.wd.timeout}
	}
	return n, err
}

func (b *watchedBody) Close() error {
	err := b.rc.Close()
	b.wd.stop()
	return err
}
