package registry

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// scoped makes go-containerregistry's in-process registry (whose blobs are
// global) behave like a real one: a repository has a blob only once it was
// uploaded or mounted there, and POST ?mount=D&from=R mounts when R has it
// (201) or opens an upload (202), as the distribution server does. It also
// records what happened.
type scoped struct {
	mu     sync.Mutex
	have   map[string]map[string]bool // repository -> digest
	log    []string                   // "METHOD kind repo digest-or-ref"
	mounts atomic.Int64
	// patchBytes counts bytes received by PATCH uploads.
	patchBytes atomic.Int64
}

func newScoped() *scoped { return &scoped{have: map[string]map[string]bool{}} }

// splitV2 splits /v2/<repo>/<kind>/<rest> at the last /blobs/ or
// /manifests/.
func splitV2(path string) (repo, kind, rest string) {
	p := strings.TrimPrefix(path, "/v2/")
	for _, k := range []string{"/blobs/uploads", "/blobs/", "/manifests/", "/tags/list"} {
		if i := strings.LastIndex(p, k); i >= 0 {
			return p[:i], strings.Trim(k, "/"), strings.TrimPrefix(p[i+len(k):], "/")
		}
	}
	return "", "", p
}

func (s *scoped) mark(repo, d string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.have[repo] == nil {
		s.have[repo] = map[string]bool{}
	}
	s.have[repo][d] = true
}

func (s *scoped) has(repo, d string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.have[repo][d]
}

func (s *scoped) record(e string) {
	s.mu.Lock()
	s.log = append(s.log, e)
	s.mu.Unlock()
}

func (s *scoped) events() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

// statusRecorder remembers the status an inner handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (s *scoped) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		repo, kind, rest := splitV2(r.URL.Path)
		switch {
		case kind == "blobs" && (r.Method == http.MethodHead || r.Method == http.MethodGet):
			if !s.has(repo, rest) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				if r.Method == http.MethodGet {
					_, _ = io.WriteString(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}`)
				}
				return
			}
			s.record(r.Method + " blob " + repo + " " + rest)
		case kind == "blobs/uploads" && r.Method == http.MethodPost && r.URL.Query().Get("mount") != "":
			d, from := r.URL.Query().Get("mount"), r.URL.Query().Get("from")
			if s.has(from, d) {
				s.mark(repo, d)
				s.mounts.Add(1)
				s.record("MOUNT " + repo + " " + d + " from " + from)
				w.Header().Set("Location", "/v2/"+repo+"/blobs/"+d)
				w.Header().Set("Docker-Content-Digest", d)
				w.WriteHeader(http.StatusCreated)
				return
			}
			q := r.URL.Query()
			q.Del("mount")
			q.Del("from")
			r.URL.RawQuery = q.Encode()
		case kind == "blobs/uploads" && r.Method == http.MethodPatch:
			body, _ := io.ReadAll(r.Body)
			s.patchBytes.Add(int64(len(body)))
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		case kind == "blobs/uploads" && r.Method == http.MethodPut:
			rec := &statusRecorder{ResponseWriter: w}
			next.ServeHTTP(rec, r)
			if rec.status == http.StatusCreated {
				d := r.URL.Query().Get("digest")
				s.mark(repo, d)
				s.record("PUT blob " + repo + " " + d)
			}
			return
		case kind == "manifests" && r.Method == http.MethodPut:
			rec := &statusRecorder{ResponseWriter: w}
			next.ServeHTTP(rec, r)
			if rec.status == http.StatusCreated {
				s.record("PUT manifest " + repo + " " + rest)
			}
			return
		}
		next.ServeHTTP(w, r)
	})
}

// newScopedRegistry starts the in-process registry behind scoped (and
// then wrap, outermost, if not nil).
func newScopedRegistry(t *testing.T, wrap func(http.Handler) http.Handler) (string, *scoped) {
	t.Helper()
	s := newScoped()
	h := s.wrap(newRegistryHandler())
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), s
}

func (s *scoped) String() string {
	return fmt.Sprintf("%d mounts, %d PATCH bytes, log %v", s.mounts.Load(), s.patchBytes.Load(), s.events())
}
