package harness

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FaultKind is what a FaultProxy does to one request.
type FaultKind int

// The faults a FaultProxy injects.
const (
	// FaultNone passes the request through.
	FaultNone FaultKind = iota
	// FaultDrop closes the client's connection without an answer; the
	// registry never sees the request.
	FaultDrop
	// FaultDropMidBody forwards the request and closes the connection
	// halfway through a body: the request body of an upload (the registry
	// sees a partial upload), else the response body (the client sees a
	// short read); with neither, the registry acts on the request and the
	// answer is lost.
	FaultDropMidBody
	// Fault500 answers 500 Internal Server Error without forwarding.
	Fault500
	// Fault429 answers 429 Too Many Requests with Retry-After without
	// forwarding.
	Fault429
	// FaultStall holds the request, unforwarded, until the client goes away
	// or the proxy is closed; then the connection is closed.
	FaultStall
	// FaultStallMidBody forwards the request and holds it halfway through a
	// body (as FaultDropMidBody chooses it) until the client goes away or
	// the proxy is closed.
	FaultStallMidBody
)

var faultNames = [...]string{"none", "drop", "drop-mid-body", "500", "429", "stall", "stall-mid-body"}

func (k FaultKind) String() string {
	if k >= 0 && int(k) < len(faultNames) {
		return faultNames[k]
	}
	return "fault(" + strconv.Itoa(int(k)) + ")"
}

// DefaultFaultKinds are the faults a FaultProxy picks from when
// FaultOptions.Kinds is empty: the transient ones a client must retry.
var DefaultFaultKinds = []FaultKind{FaultDrop, FaultDropMidBody, Fault500, Fault429}

// FaultOptions configures a FaultProxy.
type FaultOptions struct {
	// Seed makes the random faults repeatable: the same sequence of
	// requests gets the same faults.
	Seed int64
	// Rate is the probability (0 to 1) that an eligible request gets a
	// fault.
	Rate float64
	// Kinds are the faults to pick from, uniformly (default
	// DefaultFaultKinds).
	Kinds []FaultKind
	// MaxConsecutive, when positive, caps how many requests with the same
	// method and path (upload IDs aside) fail in a row: the next one passes.
	// It keeps a fault rate from exceeding a client's retry budget by bad
	// luck alone.
	MaxConsecutive int
	// Eligible selects the requests that may get random faults (default:
	// every request under /v2/).
	Eligible func(r *http.Request) bool
	// Rule, when set, is asked first about every request; a result other
	// than FaultNone is applied whatever Rate says.
	Rule func(r *http.Request) FaultKind
	// CorruptBlob, when set, selects blob digests whose GET response
	// bodies are rewritten (one byte changed, same length, status 200).
	CorruptBlob func(digest string) bool
	// RetryAfter is the Retry-After of Fault429 (default 1 s).
	RetryAfter time.Duration
	// TargetCA, when set, is trusted for an https target.
	TargetCA *CA
}

// Exchange is one request a FaultProxy handled.
type Exchange struct {
	// Method and Path of the request; Query is its raw query.
	Method, Path, Query string
	// Status is the status the client received (0: none, the connection
	// was closed or stalled first).
	Status int
	// ReqBytes is the request body bytes read from the client.
	ReqBytes int64
	// RespBytes is the response body bytes sent to the client.
	RespBytes int64
	// Fault is what the proxy did.
	Fault FaultKind
	// Corrupted reports that the response body was rewritten.
	Corrupted bool
	// Seq and Done are ticks of one clock (from 1) when the exchange
	// started and ended: exchange a ended before b started if a.Done <
	// b.Seq.
	Seq, Done int
}

// FaultProxy is a reverse proxy on 127.0.0.1 in front of a registry that
// injects faults (dropped connections, mid-body too, 500s, 429s, stalls,
// corrupted blobs) and records every exchange. With no faults configured it
// is a recording proxy: it counts upload bytes, mounts and downloads.
type FaultProxy struct {
	// Addr is "127.0.0.1:PORT", to use as the registry in references.
	Addr string

	opts    FaultOptions
	srv     *http.Server
	closing chan struct{}
	closed  sync.Once
	active  sync.WaitGroup // handlers running
	// answering counts handlers whose answer went out but whose exchange
	// is not logged yet: Exchanges waits for them, so that a client that
	// has its answer finds its exchange logged.
	answering atomic.Int64

	mu       sync.Mutex
	seen     map[string]int // decision key -> occurrences
	streak   map[string]int // decision key -> consecutive faults
	clock    int
	log      []Exchange
	stalled  chan struct{}
	nstalled int
}

// uploadPath matches /v2/<name>/blobs/uploads/<id> (id empty for POST).
var uploadPath = regexp.MustCompile(`^/v2/(.+)/blobs/uploads/([^/]*)$`)

// manifestPath matches /v2/<name>/manifests/<reference>.
var manifestPath = regexp.MustCompile(`^/v2/(.+)/manifests/([^/]+)$`)

// NewFaultProxy starts a FaultProxy in front of target ("host:port" for
// plain HTTP, or an http:// or https:// URL).
func NewFaultProxy(target string, o FaultOptions) (*FaultProxy, error) {
	if !strings.Contains(target, "://") {
		target = "http://" + target
	}
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	if len(o.Kinds) == 0 {
		o.Kinds = DefaultFaultKinds
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = time.Second
	}
	if o.Eligible == nil {
		o.Eligible = func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/v2/") }
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if o.TargetCA != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: o.TargetCA.CertPool(), MinVersion: tls.VersionTLS12}
	}
	p := &FaultProxy{
		Addr:    ln.Addr().String(),
		opts:    o,
		closing: make(chan struct{}),
		seen:    map[string]int{},
		streak:  map[string]int{},
		stalled: make(chan struct{}),
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.SetXForwarded()
			r.Out.Host = r.In.Host
		},
		Transport:     tr,
		FlushInterval: -1,
		ErrorLog:      log.New(io.Discard, "", 0),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			var cut *cutError
			if errors.As(err, &cut) {
				panic(http.ErrAbortHandler)
			}
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.serve(rp, w, r) }),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Close releases stalled requests, closes every connection and waits (up
// to 30 s) until no handler runs: after it returns, nothing more reaches
// the registry through the proxy.
func (p *FaultProxy) Close() error {
	p.closed.Do(func() { close(p.closing) })
	err := p.srv.Close()
	done := make(chan struct{})
	go func() {
		p.active.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		err = errors.Join(err, errors.New("fault proxy: requests still running 30s after close"))
	}
	return err
}

// Stalled is closed when the proxy first holds a request (FaultStall or
// FaultStallMidBody).
func (p *FaultProxy) Stalled() <-chan struct{} { return p.stalled }

// Exchanges returns the exchanges that have ended, in the order they ended.
func (p *FaultProxy) Exchanges() []Exchange {
	// Handlers that already answered finish within moments; a held
	// (stalled) request has not answered and is not waited for.
	for i := 0; i < 5000 && p.answering.Load() > 0; i++ {
		time.Sleep(time.Millisecond)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.log)
}

// Faults counts the exchanges that ended per fault kind (FaultNone
// included).
func (p *FaultProxy) Faults() map[FaultKind]int {
	m := map[FaultKind]int{}
	for _, e := range p.Exchanges() {
		m[e.Fault]++
	}
	return m
}

// decisionKey is a request's method and path with upload IDs left out, so
// that a retried upload counts as the same request.
func decisionKey(r *http.Request) string {
	path := r.URL.Path
	if m := uploadPath.FindStringSubmatch(path); m != nil && m[2] != "" {
		path = "/v2/" + m[1] + "/blobs/uploads/*"
	}
	return r.Method + " " + path
}

// decide picks the fault for r.
func (p *FaultProxy) decide(r *http.Request) FaultKind {
	if p.opts.Rule != nil {
		if k := p.opts.Rule(r); k != FaultNone {
			return k
		}
	}
	if p.opts.Rate <= 0 || !p.opts.Eligible(r) {
		return FaultNone
	}
	key := decisionKey(r)
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.seen[key]
	p.seen[key]++
	h := sha256.Sum256([]byte(fmt.Sprintf("%d\x00%s\x00%d", p.opts.Seed, key, n)))
	u := float64(binary.BigEndian.Uint64(h[:8])>>11) / float64(1<<53)
	if u >= p.opts.Rate || (p.opts.MaxConsecutive > 0 && p.streak[key] >= p.opts.MaxConsecutive) {
		p.streak[key] = 0
		return FaultNone
	}
	p.streak[key]++
	return p.opts.Kinds[binary.BigEndian.Uint64(h[8:16])%uint64(len(p.opts.Kinds))]
}

// markStalled records that a request is being held.
func (p *FaultProxy) markStalled() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.nstalled == 0 {
		close(p.stalled)
	}
	p.nstalled++
}

// hold blocks until ctx ends or the proxy closes.
func (p *FaultProxy) hold(ctx context.Context) {
	p.markStalled()
	select {
	case <-ctx.Done():
	case <-p.closing:
	}
}

func (p *FaultProxy) serve(rp *httputil.ReverseProxy, w http.ResponseWriter, r *http.Request) {
	p.active.Add(1)
	defer p.active.Done()
	p.mu.Lock()
	p.clock++
	ex := Exchange{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Seq: p.clock}
	p.mu.Unlock()
	ex.Fault = p.decide(r)

	body := &cutReader{r: r.Body, limit: -1, ctx: r.Context(), p: p}
	r.Body = body
	rw := &faultWriter{ResponseWriter: w, ctx: r.Context(), p: p}
	defer func() {
		ex.ReqBytes, ex.RespBytes, ex.Status, ex.Corrupted = body.n, rw.n, rw.status, rw.corrupted
		p.mu.Lock()
		p.clock++
		ex.Done = p.clock
		p.log = append(p.log, ex)
		p.mu.Unlock()
		if rw.sent {
			p.answering.Add(-1)
		}
	}()

	switch ex.Fault {
	case FaultDrop:
		panic(http.ErrAbortHandler)
	case Fault500:
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(rw, `{"errors":[{"code":"UNKNOWN","message":"injected fault"}]}`+"\n")
		return
	case Fault429:
		rw.Header().Set("Content-Type", "application/json")
		rw.Header().Set("Retry-After", strconv.Itoa(int((p.opts.RetryAfter+time.Second-1)/time.Second)))
		rw.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(rw, `{"errors":[{"code":"TOOMANYREQUESTS","message":"injected fault"}]}`+"\n")
		return
	case FaultStall:
		p.hold(r.Context())
		panic(http.ErrAbortHandler)
	case FaultDropMidBody, FaultStallMidBody:
		stall := ex.Fault == FaultStallMidBody
		switch {
		case r.ContentLength > 0:
			body.limit, body.stall = r.ContentLength/2, stall
		case r.ContentLength < 0 && r.Body != http.NoBody:
			body.limit, body.stall = 32<<10, stall
		default:
			rw.cut, rw.stall = true, stall
		}
	}
	if p.opts.CorruptBlob != nil && r.Method == http.MethodGet {
		if m := blobPath.FindStringSubmatch(r.URL.Path); m != nil && p.opts.CorruptBlob(m[2]) {
			rw.corrupt = true
		}
	}
	rp.ServeHTTP(rw, r)
	if rw.cut && !rw.aborted {
		// The registry acted on the request; the answer is lost (no body
		// to cut) or was shorter than the cut point.
		if rw.stall {
			p.hold(r.Context())
		}
		panic(http.ErrAbortHandler)
	}
}

// cutError is how a cutReader ends a request body it cuts.
type cutError struct{}

func (*cutError) Error() string { return "fault proxy: request body cut" }

// cutReader counts a request body and, when limit >= 0, ends it after limit
// bytes with a cutError (after holding it, if stall).
type cutReader struct {
	r     io.ReadCloser
	n     int64
	limit int64
	stall bool
	ctx   context.Context
	p     *FaultProxy
}

func (c *cutReader) Read(b []byte) (int, error) {
	if c.limit >= 0 {
		if c.n >= c.limit {
			if c.stall {
				c.p.hold(c.ctx)
			}
			return 0, &cutError{}
		}
		if rem := c.limit - c.n; int64(len(b)) > rem {
			b = b[:rem]
		}
	}
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

func (c *cutReader) Close() error { return c.r.Close() }

// faultWriter records the status and body bytes sent to the client; it
// rewrites a byte of the body when corrupt, and when cut it ends the
// response halfway through its body (holding it first, if stall).
type faultWriter struct {
	http.ResponseWriter
	status    int
	sent      bool // the header went to the client
	n         int64
	size      int64 // Content-Length of the response, -1 unknown
	cut       bool
	stall     bool
	aborted   bool
	corrupt   bool
	corrupted bool
	ctx       context.Context
	p         *FaultProxy
}

func (w *faultWriter) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	w.status = code
	w.size = -1
	if cl := w.Header().Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil {
			w.size = n
		}
	}
	if code != http.StatusOK {
		w.corrupt = false
	}
	if !w.cut {
		w.sendHeader()
	}
}

// sendHeader sends the status line and header to the client. A response
// to cut waits for its first body bytes: without a body, its answer is
// lost whole.
func (w *faultWriter) sendHeader() {
	if !w.sent {
		w.sent = true
		w.p.answering.Add(1)
		w.ResponseWriter.WriteHeader(w.status)
	}
}

func (w *faultWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.sendHeader()
	if w.cut {
		limit := int64(32 << 10)
		if w.size > 0 {
			limit = w.size / 2
		}
		if w.n+int64(len(b)) > limit {
			_, _ = w.write(b[:limit-w.n])
			w.Flush()
			w.aborted = true
			if w.stall {
				w.p.hold(w.ctx)
			}
			panic(http.ErrAbortHandler)
		}
	}
	return w.write(b)
}

// write sends b, rewriting the byte in the middle of the body when corrupt.
func (w *faultWriter) write(b []byte) (int, error) {
	if w.corrupt && !w.corrupted && len(b) > 0 {
		at := int64(0)
		if w.size > 0 {
			at = w.size / 2
		}
		if at < w.n {
			at = w.n
		}
		if at < w.n+int64(len(b)) {
			c := slices.Clone(b)
			c[at-w.n] ^= 0xff
			b = c
			w.corrupted = true
		}
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *faultWriter) Flush() {
	if !w.sent {
		return
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Upload is a blob upload a registry completed (PUT .../blobs/uploads/ID
// ?digest=D answered 201).
type Upload struct {
	Repo, Digest string
	// Bytes is the request body bytes of this upload's PATCH and PUT
	// requests (those of earlier, failed uploads of the blob not counted).
	Bytes int64
}

// Uploads returns the blob uploads completed through the proxy, in the
// order they completed.
func Uploads(ex []Exchange) []Upload {
	bytes := map[string]int64{} // upload path -> body bytes
	var out []Upload
	for _, e := range ex {
		m := uploadPath.FindStringSubmatch(e.Path)
		if m == nil || m[2] == "" || (e.Method != http.MethodPatch && e.Method != http.MethodPut) {
			continue
		}
		bytes[e.Path] += e.ReqBytes
		if e.Method == http.MethodPut && e.Status == http.StatusCreated {
			q, _ := url.ParseQuery(e.Query)
			out = append(out, Upload{Repo: m[1], Digest: q.Get("digest"), Bytes: bytes[e.Path]})
		}
	}
	return out
}

// UploadBytes returns the request body bytes of every upload request
// (POST, PATCH and PUT under /blobs/uploads/), failed ones included.
func UploadBytes(ex []Exchange) int64 {
	var n int64
	for _, e := range ex {
		if uploadPath.MatchString(e.Path) {
			n += e.ReqBytes
		}
	}
	return n
}

// UploadRequests returns the requests under /blobs/uploads/ (starts,
// chunks, commits and mounts), as "METHOD PATH?QUERY STATUS".
func UploadRequests(ex []Exchange) []string {
	var out []string
	for _, e := range ex {
		if uploadPath.MatchString(e.Path) {
			out = append(out, e.String())
		}
	}
	return out
}

// Mount is a cross-repository blob mount a registry made (POST
// .../blobs/uploads/?mount=D&from=R answered 201).
type Mount struct {
	Repo, From, Digest string
}

// Mounts returns the blob mounts completed through the proxy.
func Mounts(ex []Exchange) []Mount {
	var out []Mount
	for _, e := range ex {
		m := uploadPath.FindStringSubmatch(e.Path)
		if m == nil || m[2] != "" || e.Method != http.MethodPost || e.Status != http.StatusCreated {
			continue
		}
		q, _ := url.ParseQuery(e.Query)
		if q.Get("mount") != "" {
			out = append(out, Mount{Repo: m[1], From: q.Get("from"), Digest: q.Get("mount")})
		}
	}
	return out
}

// BlobGetBytes returns the response body bytes of GET requests for blobs,
// per digest.
func BlobGetBytes(ex []Exchange) map[string]int64 {
	out := map[string]int64{}
	for _, e := range ex {
		if e.Method != http.MethodGet {
			continue
		}
		if m := blobPath.FindStringSubmatch(e.Path); m != nil {
			out[m[2]] += e.RespBytes
		}
	}
	return out
}

// ManifestPuts returns the manifest PUTs answered 201, as "NAME:REFERENCE".
func ManifestPuts(ex []Exchange) []string {
	var out []string
	for _, e := range ex {
		if m := manifestPath.FindStringSubmatch(e.Path); m != nil && e.Method == http.MethodPut && e.Status == http.StatusCreated {
			out = append(out, m[1]+":"+m[2])
		}
	}
	return out
}

// String is "METHOD PATH[?QUERY] STATUS [FAULT]".
func (e Exchange) String() string {
	s := e.Method + " " + e.Path
	if e.Query != "" {
		s += "?" + e.Query
	}
	s += " " + strconv.Itoa(e.Status)
	if e.Fault != FaultNone {
		s += " [" + e.Fault.String() + "]"
	}
	if e.Corrupted {
		s += " [corrupted]"
	}
	return s
}

// BlobsKnownPresent returns, for each blob digest, the clock tick (an
// Exchange's Done) at which the client first learnt that repo holds it:
// an upload committed (PUT 201), a mount made (POST 201) or a HEAD answered
// 200.
func BlobsKnownPresent(ex []Exchange, repo string) map[string]int {
	out := map[string]int{}
	note := func(d string, tick int) {
		if d == "" {
			return
		}
		if t, ok := out[d]; !ok || tick < t {
			out[d] = tick
		}
	}
	for _, e := range ex {
		q, _ := url.ParseQuery(e.Query)
		if m := uploadPath.FindStringSubmatch(e.Path); m != nil && m[1] == repo && e.Status == http.StatusCreated {
			switch e.Method {
			case http.MethodPut:
				note(q.Get("digest"), e.Done)
			case http.MethodPost:
				note(q.Get("mount"), e.Done)
			}
		}
		if m := blobPath.FindStringSubmatch(e.Path); m != nil && m[1] == repo && e.Method == http.MethodHead && e.Status == http.StatusOK {
			note(m[2], e.Done)
		}
	}
	return out
}
