package registry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// cutFirstManifest answers the first manifest GET with half its body and
// then drops the connection.
type cutFirstManifest struct{ cut atomic.Int32 }

func (c *cutFirstManifest) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/manifests/") || c.cut.Add(1) != 1 {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
	})
}

// A manifest answer cut in the middle is asked for again, like a failed
// request; with retries off it is an error.
func TestManifestCutMidBodyIsRetried(t *testing.T) {
	isolateEnv(t)
	c := &cutFirstManifest{}
	host := newRegistry(t, c.wrap)
	want := seedImage(t, host+"/cut/app:1", nil, 1024, 1)
	o := fastOpts()
	img, _, err := New(o).Image(context.Background(), mustRef(t, host+"/cut/app:1", o), nil)
	if err != nil {
		t.Fatalf("a cut manifest answer was not retried: %v", err)
	}
	got, _ := img.Digest()
	wd, _ := want.Digest()
	if got != wd || c.cut.Load() < 2 {
		t.Fatalf("digest %s (want %s), %d manifest GETs", got, wd, c.cut.Load())
	}

	c.cut.Store(0)
	o.Retries = -1
	if _, _, err := New(o).Image(context.Background(), mustRef(t, host+"/cut/app:1", o), nil); err == nil {
		t.Fatal("with retries off a cut manifest answer must be an error")
	}
}
