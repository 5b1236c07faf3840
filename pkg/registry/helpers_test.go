package registry

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// isolateEnv points every credential location at empty temporary
// directories so that tests never read the real ~/.docker or auth.json.
func isolateEnv(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("DOCKER_CONFIG", "")
	t.Setenv("REGISTRY_AUTH_FILE", "")
	for _, k := range []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"} {
		t.Setenv(k, "")
	}
	return home
}

// fastOpts are Options for tests: quick retries.
func fastOpts() Options {
	return Options{RetryDelay: time.Millisecond}
}

// newRegistry starts go-containerregistry's in-process registry behind
// wrap (nil for none) and returns its host:port.
func newRegistry(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	h := newRegistryHandler()
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func writeUnauthorized(w http.ResponseWriter, challenge string) {
	w.Header().Set("WWW-Authenticate", challenge)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
}

// basicAuth demands HTTP basic credentials user:pass on /v2/.
func basicAuth(user, pass string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != pass {
				writeUnauthorized(w, `Basic realm="kiln-test"`)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// bearerAuth implements the docker token flow on the registry's own host:
// GET /token with basic credentials user:pass returns a token that /v2/
// requires.
type bearerAuth struct {
	user, pass string
	mu         sync.Mutex
	tokens     map[string]bool
	n          int
	tokenReqs  atomic.Int64
}

func newBearerAuth(user, pass string) *bearerAuth {
	return &bearerAuth{user: user, pass: pass, tokens: map[string]bool{}}
}

func (b *bearerAuth) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			b.tokenReqs.Add(1)
			u, p, ok := r.BasicAuth()
			if !ok || u != b.user || p != b.pass {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"invalid username or password"}]}`)
				return
			}
			b.mu.Lock()
			b.n++
			tok := fmt.Sprintf("tok-%d-%d", b.n, time.Now().UnixNano())
			b.tokens[tok] = true
			b.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{"token": tok})
			return
		}
		auth := r.Header.Get("Authorization")
		tok, isBearer := strings.CutPrefix(auth, "Bearer ")
		b.mu.Lock()
		valid := isBearer && b.tokens[tok]
		b.mu.Unlock()
		if !valid {
			writeUnauthorized(w, fmt.Sprintf(`Bearer realm="http://%s/token",service="kiln-test"`, r.Host))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// flaky fails every third request: alternately with a 500 and by closing
// the connection without an answer (a reset, as the client sees it).
// maxFlakyFailures bounds how many requests a flaky handler fails.
const maxFlakyFailures = 8

type flaky struct {
	n        atomic.Int64
	failures atomic.Int64
	resets   atomic.Int64
	// failed holds the requests (method and path) whose last attempt
	// failed: their retry goes through, so that concurrent requests cannot
	// make one request fail on every attempt and the test stays
	// deterministic under load.
	mu     sync.Mutex
	failed map[string]bool
}

func (f *flaky) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := f.n.Add(1)
		key := r.Method + " " + r.URL.Path
		f.mu.Lock()
		if f.failed == nil {
			f.failed = map[string]bool{}
		}
		retry := f.failed[key]
		// A bounded number of failures: a blob's retried upload is a new
		// session (new paths), so unbounded failures could, under some
		// interleavings of concurrent uploads, exhaust its retries.
		fail := n%3 == 0 && !retry && f.failures.Load() < maxFlakyFailures
		f.failed[key] = fail
		f.mu.Unlock()
		if !fail {
			next.ServeHTTP(w, r)
			return
		}
		f.failures.Add(1)
		if (n/3)%2 == 0 {
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					f.resets.Add(1)
					_ = conn.Close()
					return
				}
			}
		}
		http.Error(w, `{"errors":[{"code":"UNKNOWN","message":"flaky"}]}`, http.StatusInternalServerError)
	})
}

// writeAuthFile writes a docker/podman auth file with the given auths
// entries (key -> user:pass) and extra top-level fields.
func writeAuthFile(t *testing.T, path string, auths map[string]string, extra map[string]any) {
	t.Helper()
	top := map[string]any{}
	for k, v := range extra {
		top[k] = v
	}
	a := map[string]any{}
	for k, up := range auths {
		a[k] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(up))}
	}
	top["auths"] = a
	b, err := json.Marshal(top)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// seedImage pushes a random image to ref with go-containerregistry alone
// (not the code under test) and returns it.
func seedImage(t *testing.T, ref string, auth authn.Authenticator, size, layers int64, opts ...remote.Option) v1.Image {
	t.Helper()
	img, err := random.Image(size, layers)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if auth == nil {
		auth = authn.Anonymous
	}
	if err := remote.Write(r, img, append(opts, remote.WithAuth(auth))...); err != nil {
		t.Fatalf("seeding %s: %v", ref, err)
	}
	return img
}

func mustRef(t *testing.T, s string, o Options) name.Reference {
	t.Helper()
	r, err := New(o).ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
