package testutil

import (
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"

	"github.com/kiln-build/kiln/internal/testutil/harness"
)

// StartRegistry starts Debian's docker-registry (/usr/bin/docker-registry)
// on a free 127.0.0.1 port with a temporary storage directory and its own
// configuration (plain HTTP, no authentication, deletes enabled), waits until
// it answers /v2/, and kills it when the test ends. It returns
// "127.0.0.1:PORT"; references such as "127.0.0.1:PORT/library/x:tag" reach
// it over plain HTTP.
func StartRegistry(t testing.TB) string {
	t.Helper()
	r, err := harness.StartRegistry(t.TempDir())
	Require(t, err)
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("stop registry %s: %v", r.Addr, err)
		}
	})
	return r.Addr
}

// StartInProcessRegistry serves go-containerregistry's in-memory registry
// with httptest on 127.0.0.1 until the test ends, and returns
// "127.0.0.1:PORT". It is fast and needs nothing installed, but it is not
// the real registry: end-to-end tests use StartRegistry.
func StartInProcessRegistry(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// StartReferrersRegistry is StartInProcessRegistry with the OCI 1.1
// referrers API (GET /v2/<name>/referrers/<digest>), which Debian's
// docker-registry lacks.
func StartReferrersRegistry(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)), ggcrregistry.WithReferrersSupport(true)))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// Counts is what a CountingProxy has seen; see harness.Counts.
type Counts = harness.Counts

// CountingProxy starts a reverse proxy on 127.0.0.1 in front of the
// plain-HTTP registry at target ("host:port") until the test ends. It
// returns the proxy's "127.0.0.1:PORT" (use it as the registry in
// references) and the counts of what went through it: the response body
// bytes of GET /v2/*/blobs/<digest> per digest, and every request.
func CountingProxy(t testing.TB, target string) (addr string, counts *Counts) {
	t.Helper()
	p, err := harness.NewCountingProxy(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p.Addr, p.Counts
}
