package e2e

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/internal/testutil/harness"
)

// TestRegistryTLSFlags: a registry whose certificate comes from a CA
// nobody trusts is refused with a certificate error naming it, and reached
// with --cert-dir, SSL_CERT_FILE, --insecure-registry or --tls-verify=false.
// --tls-verify=true refuses plain HTTP even on loopback.
func TestRegistryTLSFlags(t *testing.T) {
	testutil.SkipIfShort(t)
	s := testutil.StartTLSBasicRegistry(t, testutil.SetupOptions{})
	s.Push(t, "library/busybox:1", testutil.BusyboxImage(t))
	want := s.Descriptor(t, "library/busybox:1").Digest.String()
	creds := s.User + ":" + s.Password
	src := s.Ref("library/busybox:1")

	u := newKilnUser(t)
	r := u.fails(t, "pull", "--creds", creds, src)
	if !strings.Contains(r.stderr, s.Addr) || !hasWord(r.stderr, "certificate") {
		t.Errorf("pull from an untrusted TLS registry: stderr does not name %s and the certificate\n%s", s.Addr, r)
	}
	u.fails(t, "copy", "--src-creds", creds, "--dest-creds", creds, src, s.Ref("tls/none:1"))

	for i, c := range []struct {
		name  string
		flags []string
		env   map[string]string
	}{
		{"--cert-dir", []string{"--cert-dir", s.CertDir}, nil},
		{"SSL_CERT_FILE", nil, map[string]string{"SSL_CERT_FILE": s.CAFile}},
		{"--insecure-registry", []string{"--insecure-registry", s.Addr}, nil},
		{"--tls-verify=false", []string{"--tls-verify=false"}, nil},
		{"--tls-verify=true --cert-dir", []string{"--tls-verify=true", "--cert-dir", s.CertDir}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := newKilnUser(t)
			for k, val := range c.env {
				v.setenv(k, val)
			}
			dst := s.Ref("tls/copy:" + strconv.Itoa(i))
			r := v.ok(t, append(c.flags, "copy", "--src-creds", creds, "--dest-creds", creds, src, dst)...)
			if d := pushedDigest(t, r, dst); d != want {
				t.Errorf("copy printed %s, want %s", d, want)
			}
			v.ok(t, append(c.flags, "pull", "--creds", creds, src)...)
			v.noSecrets(t, s.Password)
		})
	}

	t.Run("--tls-verify=true on plain HTTP", func(t *testing.T) {
		p := testutil.StartPlainRegistry(t)
		p.Push(t, "library/busybox:1", testutil.BusyboxImage(t))
		v := newKilnUser(t)
		v.ok(t, "pull", p.Ref("library/busybox:1")) // loopback: plain HTTP by default
		r := v.fails(t, "--tls-verify=true", "pull", p.Ref("library/busybox:1"))
		if !strings.Contains(r.stderr, p.Addr) {
			t.Errorf("the error does not name %s\n%s", p.Addr, r)
		}
	})
	u.noSecrets(t, s.Password)
}

// TestRegistryRetryFlag: the manifest PUT of a push is answered 500 twice,
// then passes. With --retry 1 (two attempts) the push fails, showing what
// the registry said, after at most two attempts and without a manifest; with --retry 2 it succeeds. A 429
// with Retry-After is retried too.
func TestRegistryRetryFlag(t *testing.T) {
	testutil.SkipIfShort(t)
	s := testutil.StartPlainRegistry(t)
	s.Push(t, "library/busybox:1", testutil.BusyboxImage(t))
	u := newKilnUser(t)
	u.ok(t, "pull", s.Ref("library/busybox:1"))

	// failFirst answers the first n manifest PUTs with kind.
	failFirst := func(n int, kind harness.FaultKind) harness.FaultOptions {
		var mu sync.Mutex
		seen := 0
		return harness.FaultOptions{Rule: func(r *http.Request) harness.FaultKind {
			if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/manifests/") {
				return harness.FaultNone
			}
			mu.Lock()
			defer mu.Unlock()
			seen++
			if seen <= n {
				return kind
			}
			return harness.FaultNone
		}}
	}
	puts := func(ex []harness.Exchange) int {
		n := 0
		for _, e := range ex {
			if e.Method == http.MethodPut && strings.Contains(e.Path, "/manifests/") {
				n++
			}
		}
		return n
	}

	fp := s.FaultProxy(t, failFirst(2, harness.Fault500))
	r := u.fails(t, "--retry", "1", "push", s.Ref("library/busybox:1"), fp.Addr+"/retry/app:1")
	if !strings.Contains(r.stderr, "injected fault") || !strings.Contains(r.stderr, "/manifests/1") {
		t.Errorf("push that ran out of retries: stderr does not show the manifest request and what the registry said\n%s", r)
	}
	if n := puts(fp.Exchanges()); n > 2 {
		t.Errorf("--retry 1 made %d manifest PUT attempts, want at most 2", n)
	}
	noManifest(t, s, "retry/app", "1")

	fp = s.FaultProxy(t, failFirst(2, harness.Fault500))
	u.ok(t, "--retry", "2", "push", s.Ref("library/busybox:1"), fp.Addr+"/retry/app:2")
	if n := puts(fp.Exchanges()); n != 3 {
		t.Errorf("--retry 2 against two 500s made %d manifest PUT attempts, want 3", n)
	}
	s.VerifyBlobs(t, "retry/app:2")

	fp = s.FaultProxy(t, failFirst(1, harness.Fault429))
	u.ok(t, "push", s.Ref("library/busybox:1"), fp.Addr+"/retry/app:3")
	s.VerifyBlobs(t, "retry/app:3")
}
