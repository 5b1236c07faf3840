package registry

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/kiln-build/kiln/internal/testutil"
)

// faults fails a share of the requests in the ways registries and proxies
// do: 500s, 429s, connections closed before an answer, uploads cut in the
// middle of their body, answers lost after the registry acted, and blob
// downloads cut in the middle.
type faults struct {
	mu   sync.Mutex
	rng  *rand.Rand
	rate float64
	n    atomic.Int64
	hit  map[string]*atomic.Int64
}

func newFaults(rate float64, seed uint64) *faults {
	return &faults{rng: rand.New(rand.NewPCG(seed, 1)), rate: rate, hit: map[string]*atomic.Int64{}}
}

func (f *faults) count(kind string) {
	f.mu.Lock()
	c, ok := f.hit[kind]
	if !ok {
		c = &atomic.Int64{}
		f.hit[kind] = c
	}
	f.mu.Unlock()
	c.Add(1)
}

func (f *faults) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for k, v := range f.hit {
		b.WriteString(k + "=" + strconv.FormatInt(v.Load(), 10) + " ")
	}
	return b.String()
}

func hangUp(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
		}
	}
}

func (f *faults) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.n.Add(1)
		f.mu.Lock()
		fail := f.rng.Float64() < f.rate
		mode := f.rng.IntN(5)
		f.mu.Unlock()
		if !fail || r.URL.Path == "/v2/" {
			next.ServeHTTP(w, r)
			return
		}
		switch {
		case mode == 0:
			f.count("500")
			http.Error(w, `{"errors":[{"code":"UNKNOWN","message":"injected"}]}`, http.StatusInternalServerError)
		case mode == 1:
			f.count("429")
			w.Header().Set("Retry-After", "0")
			http.Error(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"injected"}]}`, http.StatusTooManyRequests)
		case mode == 2 && r.Body != nil && r.ContentLength != 0 && r.Method == http.MethodPatch:
			f.count("cut-upload")
			_, _ = io.CopyN(io.Discard, r.Body, 1000)
			hangUp(w)
		case mode == 3 && r.Method != http.MethodGet && r.Method != http.MethodHead:
			f.count("lost-answer")
			next.ServeHTTP(&bodyCapture{header: http.Header{}}, r)
			hangUp(w)
		case mode == 4 && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/"):
			f.count("cut-download")
			rec := &bodyCapture{header: http.Header{}}
			next.ServeHTTP(rec, r)
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.status)
			_, _ = w.Write(rec.body[:len(rec.body)/2])
			if fl, ok := w.(http.Flusher); ok {
				fl.Flush()
			}
			hangUp(w)
		default:
			f.count("reset")
			hangUp(w)
		}
	})
}

// TestWriteAndCopyUnderFaults pushes and copies a multi-layer image through
// registries that fail 20% of the requests; both complete within the retry
// budget and every blob verifies.
func TestWriteAndCopyUnderFaults(t *testing.T) {
	isolateEnv(t)
	fa, fb := newFaults(0.2, 11), newFaults(0.2, 12)
	hostA, _ := newScopedRegistry(t, fa.wrap)
	hostB, _ := newScopedRegistry(t, fb.wrap)
	img, err := random.Image(150<<10, 6)
	if err != nil {
		t.Fatal(err)
	}
	o := fastOpts()
	o.Retries = 8
	stats := &Stats{}
	o.Stats = stats
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := New(o).Write(ctx, img, []name.Reference{mustRef(t, hostA+"/app:1", o)}); err != nil {
		t.Fatalf("push under faults: %v (%s)", err, fa)
	}
	if _, err := New(o).Copy(ctx, mustRef(t, hostA+"/app:1", o), []name.Reference{mustRef(t, hostB+"/app:1", o)}); err != nil {
		t.Fatalf("copy under faults: %v (%s / %s)", err, fa, fb)
	}
	want := testutil.Digest(t, img)
	for _, host := range []string{hostA, hostB} {
		got, _, err := New(o).Image(ctx, mustRef(t, host+"/app:1", o), nil)
		if err != nil {
			t.Fatal(err)
		}
		if testutil.Digest(t, got) != want {
			t.Fatalf("%s has %s, want %s", host, testutil.Digest(t, got), want)
		}
		testutil.CheckLayers(t, got)
	}
	if fa.n.Load() == 0 || len(fa.hit) < 3 {
		t.Errorf("too few faults injected: %s", fa)
	}
	t.Logf("A: %d requests, faults %s; B: %d requests, faults %s; %s", fa.n.Load(), fa, fb.n.Load(), fb, stats)
}

// stalls holds the first answer to each kind of request (and the first
// blob download after half its body) until the client gives up, at most
// 1.5 seconds.
type stalls struct {
	mu   sync.Mutex
	seen map[string]bool
	n    atomic.Int64
}

func (s *stalls) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Method
		switch {
		case strings.Contains(r.URL.Path, "/manifests/"):
			key += " manifest"
		case strings.Contains(r.URL.Path, "/blobs/uploads"):
			key += " upload"
		case strings.Contains(r.URL.Path, "/blobs/"):
			key += " blob"
		default:
			next.ServeHTTP(w, r)
			return
		}
		s.mu.Lock()
		first := !s.seen[key]
		s.seen[key] = true
		s.mu.Unlock()
		if !first {
			next.ServeHTTP(w, r)
			return
		}
		s.n.Add(1)
		wait := func() {
			select {
			case <-r.Context().Done():
			case <-time.After(1500 * time.Millisecond):
			}
		}
		if key == "GET blob" {
			rec := &bodyCapture{header: http.Header{}}
			next.ServeHTTP(rec, r)
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.status)
			_, _ = w.Write(rec.body[:len(rec.body)/2])
			w.(http.Flusher).Flush()
			wait()
			return
		}
		wait()
		if r.Context().Err() == nil {
			next.ServeHTTP(w, r)
		}
	})
}

func TestStalledRequestsAreRetried(t *testing.T) {
	isolateEnv(t)
	st := &stalls{seen: map[string]bool{}}
	host, _ := newScopedRegistry(t, st.wrap)
	img, err := random.Image(64<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	o := fastOpts()
	o.StallTimeout = 300 * time.Millisecond
	ctx := context.Background()
	start := time.Now()
	if _, err := New(o).Write(ctx, img, []name.Reference{mustRef(t, host+"/app:1", o)}); err != nil {
		t.Fatalf("push with stalls: %v", err)
	}
	got, _, err := New(o).Image(ctx, mustRef(t, host+"/app:1", o), nil)
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckLayers(t, got)
	if testutil.Digest(t, got) != testutil.Digest(t, img) {
		t.Error("digest changed")
	}
	if st.n.Load() < 5 {
		t.Errorf("only %d stalls", st.n.Load())
	}
	if el := time.Since(start); el > 6*time.Second {
		t.Errorf("took %s: stalls were waited out, not cut", el)
	}
	t.Logf("%d stalls survived in %s", st.n.Load(), time.Since(start).Round(time.Millisecond))
}
