package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/kiln-build/kiln/internal/testutil"
)

func newRetryTransport(retries int, delay time.Duration) *retryTransport {
	r, err := newHostRouter(Options{})
	if err != nil {
		panic(err)
	}
	return &retryTransport{inner: r, retries: retries, delay: delay}
}

func TestRetryReplaysBody(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		n := len(bodies)
		mu.Unlock()
		if n <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	rt := newRetryTransport(3, time.Millisecond)

	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/v2/x/manifests/1", bytes.NewReader([]byte("payload")))
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if strings.Join(bodies, ",") != "payload,payload,payload" {
		t.Fatalf("server saw bodies %q", bodies)
	}

	// A body that cannot be replayed is sent once; the 503 comes back.
	bodies = nil
	req, _ = http.NewRequest(http.MethodPut, srv.URL+"/v2/x/manifests/1", io.NopCloser(strings.NewReader("once")))
	resp, err = rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || len(bodies) != 1 {
		t.Fatalf("non-replayable: status %d after %d requests", resp.StatusCode, len(bodies))
	}
}

func TestRetryBoundsAndContext(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		if r.URL.Query().Get("after") != "" {
			w.Header().Set("Retry-After", r.URL.Query().Get("after"))
		}
		w.WriteHeader(code)
	}))
	defer srv.Close()

	for code, want := range map[int]int64{500: 3, 502: 3, 503: 3, 504: 3, 429: 3, 408: 3, 501: 1, 404: 1, 401: 1, 200: 1} {
		hits.Store(0)
		resp, err := newRetryTransport(2, time.Millisecond).RoundTrip(mustReq(t, fmt.Sprintf("%s/v2/?code=%d", srv.URL, code)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != code || hits.Load() != want {
			t.Errorf("status %d: %d requests (final status %d), want %d", code, hits.Load(), resp.StatusCode, want)
		}
	}

	// Retry-After is honoured (bounded).
	hits.Store(0)
	start := time.Now()
	resp, err := newRetryTransport(1, time.Millisecond).RoundTrip(mustReq(t, srv.URL+"/v2/?code=429&after=1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if d := time.Since(start); d < 900*time.Millisecond || hits.Load() != 2 {
		t.Errorf("Retry-After: 1: waited %v over %d requests", d, hits.Load())
	}

	// Cancelling the context ends the backoff at once.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start = time.Now()
	req := mustReq(t, srv.URL+"/v2/?code=503").WithContext(ctx)
	_, err = newRetryTransport(5, 10*time.Second).RoundTrip(req)
	if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
		t.Errorf("cancel: %v after %v", err, time.Since(start))
	}

	// A refused connection is not retried (it fails fast, not after backoff).
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	start = time.Now()
	_, err = newRetryTransport(3, 2*time.Second).RoundTrip(mustReq(t, "http://"+dead+"/v2/"))
	if !errors.Is(err, syscall.ECONNREFUSED) || time.Since(start) > time.Second {
		t.Errorf("refused: %v after %v", err, time.Since(start))
	}
	var re *retriedError
	if !errors.As(err, &re) || operationRetryable(err) {
		t.Errorf("refused: error %v is not marked as already retried", err)
	}
}

func mustReq(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestOperationRetryable(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{&transport.Error{StatusCode: 500}, true},
		{&transport.Error{StatusCode: 416}, true},
		{&transport.Error{StatusCode: 404, Errors: []transport.Diagnostic{{Code: transport.BlobUploadUnknownErrorCode}}}, true},
		{&transport.Error{StatusCode: 401, Errors: []transport.Diagnostic{{Code: transport.UnauthorizedErrorCode}}}, false},
		{&transport.Error{StatusCode: 404, Errors: []transport.Diagnostic{{Code: transport.ManifestUnknownErrorCode}}}, false},
		{&retriedError{err: syscall.ECONNRESET, attempts: 4}, false},
		{fmt.Errorf("wrapped: %w", io.ErrUnexpectedEOF), true},
		{errors.New("something else"), false},
		{nil, false},
	}
	for _, c := range cases {
		if got := operationRetryable(c.err); got != c.want {
			t.Errorf("operationRetryable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// cutBlobs serves blob GETs from reg but cuts the first response for each
// blob in half (the connection closes mid-body). With ranges, it answers
// Range requests with 206; without, it ignores them (200, whole blob).
type cutBlobs struct {
	reg    http.Handler
	ranges bool
	mu     sync.Mutex
	cut    map[string]bool
	ranged atomic.Int64
}

func (c *cutBlobs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/sha256:") {
		c.reg.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	inner := r.Clone(r.Context())
	inner.Header.Del("Range")
	c.reg.ServeHTTP(rec, inner)
	if rec.Code != http.StatusOK {
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return
	}
	blob := rec.Body.Bytes()
	if rg := r.Header.Get("Range"); rg != "" && c.ranges {
		c.ranged.Add(1)
		first, _, _ := strings.Cut(strings.TrimPrefix(rg, "bytes="), "-")
		from, _ := strconv.Atoi(first)
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(blob)-1, len(blob)))
		w.Header().Set("Content-Length", strconv.Itoa(len(blob)-from))
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(blob[from:])
		return
	}
	c.mu.Lock()
	first := !c.cut[r.URL.Path]
	c.cut[r.URL.Path] = true
	c.mu.Unlock()
	w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
	w.WriteHeader(http.StatusOK)
	if !first || len(blob) < 2 {
		_, _ = w.Write(blob)
		return
	}
	_, _ = w.Write(blob[:len(blob)/2])
	w.(http.Flusher).Flush()
	if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
		_ = conn.Close()
	}
}

func TestResumeBrokenBlobDownload(t *testing.T) {
	for _, ranges := range []bool{true, false} {
		t.Run(fmt.Sprintf("ranges=%v", ranges), func(t *testing.T) {
			isolateEnv(t)
			c := &cutBlobs{reg: newRegistryHandler(), ranges: ranges, cut: map[string]bool{}}
			srv := httptest.NewServer(c)
			defer srv.Close()
			host := strings.TrimPrefix(srv.URL, "http://")
			seeded := seedImage(t, host+"/resume:1", nil, 50<<10, 3)
			stats := &Stats{}
			o := fastOpts()
			o.Stats = stats
			img, _, err := New(o).Image(context.Background(), mustRef(t, host+"/resume:1", o), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := img.ConfigFile(); err != nil {
				t.Fatal(err)
			}
			testutil.CheckLayers(t, img) // verifies every digest
			var total int64
			layers, _ := seeded.Layers()
			for _, l := range layers {
				s, _ := l.Size()
				total += s
			}
			if stats.LayerBlobsDownloaded() != 3 {
				t.Errorf("%d layer blobs counted, want 3 (resumes are not new blobs)", stats.LayerBlobsDownloaded())
			}
			if ranges {
				if c.ranged.Load() != 4 { // config + 3 layers
					t.Errorf("%d range requests, want 4", c.ranged.Load())
				}
				if stats.LayerBytesDownloaded() != total {
					t.Errorf("%d layer bytes with range resumes, want exactly %d", stats.LayerBytesDownloaded(), total)
				}
			} else if stats.LayerBytesDownloaded() <= total {
				t.Errorf("%d layer bytes without range support, want more than %d (re-read prefix)", stats.LayerBytesDownloaded(), total)
			}

			// With retries off the cut surfaces as an error.
			c2 := &cutBlobs{reg: newRegistryHandler(), ranges: ranges, cut: map[string]bool{}}
			srv2 := httptest.NewServer(c2)
			defer srv2.Close()
			host2 := strings.TrimPrefix(srv2.URL, "http://")
			seedImage(t, host2+"/resume:1", nil, 50<<10, 1)
			o2 := fastOpts()
			o2.Retries = -1
			img2, _, err := New(o2).Image(context.Background(), mustRef(t, host2+"/resume:1", o2), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := img2.ConfigFile(); err == nil {
				t.Error("a cut config download succeeded with retries off")
			}
		})
	}
}
