package harness

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"time"
)

// blobPath matches /v2/<name>/blobs/<digest>.
var blobPath = regexp.MustCompile(`^/v2/(.+)/blobs/([a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+)$`)

// Counts records what went through a CountingProxy. It is safe for
// concurrent use.
type Counts struct {
	mu       sync.Mutex
	blobs    map[string]int64 // digest -> response body bytes of GETs
	gets     map[string]int   // digest -> number of GETs
	requests []string         // "METHOD PATH STATUS", in order
}

// BlobBytes returns the response body bytes sent for GET /v2/*/blobs/digest
// (all repositories, all requests, partial ones included).
func (c *Counts) BlobBytes(digest string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.blobs[digest]
}

// BlobGets returns how many GET requests were made for the blob digest.
func (c *Counts) BlobGets(digest string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gets[digest]
}

// Blobs returns a copy of the body bytes sent per blob digest.
func (c *Counts) Blobs() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]int64, len(c.blobs))
	for k, v := range c.blobs {
		m[k] = v
	}
	return m
}

// TotalBlobBytes returns the body bytes of all blob GETs.
func (c *Counts) TotalBlobBytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, v := range c.blobs {
		n += v
	}
	return n
}

// Requests returns every request seen, as "METHOD PATH STATUS", in order.
func (c *Counts) Requests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.requests...)
}

// Digests returns the digests of the blobs fetched with GET, sorted.
func (c *Counts) Digests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ds := make([]string, 0, len(c.gets))
	for d := range c.gets {
		ds = append(ds, d)
	}
	sort.Strings(ds)
	return ds
}

// CountingProxy is a reverse proxy on 127.0.0.1 in front of a plain-HTTP
// registry. It passes everything through (the Host header too, so that
// upload locations point back at the proxy) and counts the response bytes of
// blob GETs per digest.
type CountingProxy struct {
	// Addr is "127.0.0.1:PORT", to use as the registry in references.
	Addr string
	// Counts is what went through so far.
	Counts *Counts

	srv *http.Server
}

// NewCountingProxy starts a CountingProxy in front of target ("host:port").
func NewCountingProxy(target string) (*CountingProxy, error) {
	u, err := url.Parse("http://" + target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	counts := &Counts{blobs: map[string]int64{}, gets: map[string]int{}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host
		},
		FlushInterval: -1,
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w, status: http.StatusOK}
		rp.ServeHTTP(cw, r)
		counts.mu.Lock()
		defer counts.mu.Unlock()
		counts.requests = append(counts.requests, r.Method+" "+r.URL.Path+" "+strconv.Itoa(cw.status))
		if r.Method == http.MethodGet {
			if m := blobPath.FindStringSubmatch(r.URL.Path); m != nil {
				counts.blobs[m[2]] += cw.n
				counts.gets[m[2]]++
			}
		}
	})
	p := &CountingProxy{
		Addr:   ln.Addr().String(),
		Counts: counts,
		srv:    &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second},
	}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Close stops the proxy.
func (p *CountingProxy) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.srv.Shutdown(ctx)
}

type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *countingWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
