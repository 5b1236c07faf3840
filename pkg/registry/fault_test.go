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
	if _, err := Write(ctx, Artifact{Image: img}, []name.Reference{mustRef(t, hostA+"/app:1", o)}, o); err != nil {
		t.Fatalf("push under faults: %v (%s)", err, fa)
	}
	if _, err := Copy(ctx, mustRef(t, hostA+"/app:1", o), []name.Reference{mustRef(t, hostB+"/app:1", o)}, o); err != nil {
		t.Fatalf("copy under faults: %v (%s / %s)", err, fa, fb)
	}
	want := mustDigest(t, img)
	for _, host := range []string{hostA, hostB} {
		got, _, err := Image(ctx, mustRef(t, host+"/app:1", o), nil, o)
		if err != nil {
			t.Fatal(err)
		}
		if mustDigest(t, got) != want {
			t.Fatalf("%s has %s, want %s", host, mustDigest(t, got), want)
		}
		readAllLayers(t, got)
	}
	if fa.n.Load() == 0 || len(fa.hit) < 3 {
		t.Errorf("too few faults injected: %s", fa)
	}
	t.Logf("A: %d requests, faults %s; B: %d requests, faults %s; %s", fa.n.Load(), fa, fb.n.Load(), fb, stats)
}
