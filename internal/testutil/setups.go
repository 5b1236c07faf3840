package testutil

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/internal/testutil/harness"
)

// RegistrySetup is a docker-registry a test started, and what a client
// needs to reach it: its address, its CA (TLS set-ups) and a user it
// accepts (set-ups with authentication).
type RegistrySetup struct {
	// Name says which set-up it is: "plain", "tls-basic", "token" or
	// "token-tls".
	Name string
	// Addr is "127.0.0.1:PORT", the registry part of references.
	Addr string
	// Scheme is "http" or "https".
	Scheme string
	// CA issued the registry's certificate (nil without TLS).
	CA *harness.CA
	// CertDir is a directory holding the CA as ca.crt, for kiln's
	// --cert-dir ("" without TLS).
	CertDir string
	// CAFile is the CA's PEM file, for SSL_CERT_FILE ("" without TLS).
	CAFile string
	// User and Password are accepted by the registry ("" for "plain").
	// The password is random: a test can look for it in output.
	User, Password string
	// Token is the token service of the token set-ups (nil otherwise).
	Token *harness.TokenService
	// Registry is the docker-registry process; its Dir holds config.yml,
	// registry.log and storage/.
	Registry *harness.Registry
}

// SetupOptions adjusts the registry set-ups.
type SetupOptions struct {
	// User is the accepted user's name (default "kiln-ci").
	User string
	// Password is its password (default: random).
	Password string
	// AnonymousPull lets requests without credentials pull (token
	// set-ups only: the token service grants "pull" to anyone).
	AnonymousPull bool
	// TokenTTL is the lifetime of tokens (token set-ups; default 5 min).
	TokenTTL time.Duration
}

// StartPlainRegistry starts docker-registry as StartRegistry does (plain
// HTTP on 127.0.0.1, no authentication) and describes it as a set-up.
func StartPlainRegistry(t testing.TB) *RegistrySetup {
	t.Helper()
	r, err := harness.StartRegistry(t.TempDir())
	Require(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return &RegistrySetup{Name: "plain", Addr: r.Addr, Scheme: "http", Registry: r}
}

// StartTLSBasicRegistry starts docker-registry serving HTTPS with a
// certificate for 127.0.0.1 and localhost from a CA made for the test, and
// htpasswd basic authentication (bcrypt) of one user.
func StartTLSBasicRegistry(t testing.TB, o SetupOptions) *RegistrySetup {
	t.Helper()
	s := newSetup(t, "tls-basic", o, true)
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := harness.WriteHtpasswd(htpasswd, map[string]string{s.User: s.Password}); err != nil {
		t.Fatal(err)
	}
	s.start(t, harness.ServerConfig{TLS: s.CA, Htpasswd: htpasswd})
	return s
}

// StartTokenRegistry starts docker-registry with bearer-token
// authentication ("auth: token") and the token service it trusts
// (harness.TokenService, on its own port, realm http(s)://localhost:PORT).
// With tls, both serve HTTPS with certificates from a CA made for the test;
// without, both are plain HTTP on loopback.
func StartTokenRegistry(t testing.TB, o SetupOptions, tls bool) *RegistrySetup {
	t.Helper()
	nm := "token"
	if tls {
		nm = "token-tls"
	}
	s := newSetup(t, nm, o, tls)
	ts, err := harness.StartTokenService(t.TempDir(), harness.TokenOptions{
		Users:         map[string]string{s.User: s.Password},
		AnonymousPull: o.AnonymousPull,
		TTL:           o.TokenTTL,
		TLS:           s.CA,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ts.Close() })
	s.Token = ts
	s.start(t, harness.ServerConfig{TLS: s.CA, Token: ts})
	return s
}

// newSetup fills in the user and, with tls, makes a CA and its files.
func newSetup(t testing.TB, nm string, o SetupOptions, tls bool) *RegistrySetup {
	t.Helper()
	s := &RegistrySetup{Name: nm, Scheme: "http", User: o.User, Password: o.Password}
	if s.User == "" {
		s.User = "kiln-ci"
	}
	if s.Password == "" {
		s.Password = RandomSecret()
	}
	if tls {
		ca, err := harness.NewCA("kiln test CA " + nm)
		if err != nil {
			t.Fatal(err)
		}
		s.CA, s.Scheme = ca, "https"
		s.CertDir = filepath.Join(t.TempDir(), "certs")
		if err := ca.WriteCertDir(s.CertDir); err != nil {
			t.Fatal(err)
		}
		s.CAFile = filepath.Join(s.CertDir, "ca.crt")
	}
	return s
}

func (s *RegistrySetup) start(t testing.TB, c harness.ServerConfig) {
	t.Helper()
	r, err := harness.StartRegistryServer(t.TempDir(), c)
	Require(t, err)
	t.Cleanup(func() { _ = r.Close() })
	s.Registry, s.Addr = r, r.Addr
}

// RandomSecret returns a random password-like string that occurs nowhere
// else, so that tests can look for it in output.
func RandomSecret() string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "pw-" + hex.EncodeToString(b)
}

// KilnFlags returns the global kiln flags a user would give to reach the
// registry: --cert-dir with the CA for TLS set-ups, nothing otherwise.
func (s *RegistrySetup) KilnFlags() []string {
	if s.CertDir == "" {
		return nil
	}
	return []string{"--cert-dir", s.CertDir}
}

// Ref returns "ADDR/repoTag" (repoTag such as "team/app:1").
func (s *RegistrySetup) Ref(repoTag string) string { return s.Addr + "/" + repoTag }

// HTTPClient returns a client that trusts the set-up's CA (if any) and
// uses no proxy.
func (s *RegistrySetup) HTTPClient() *http.Client {
	if s.CA != nil {
		return s.CA.Client()
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	return &http.Client{Transport: tr}
}

// RemoteOptions returns go-containerregistry options that reach the
// registry directly as its user (anonymously for "plain"), trusting its CA.
func (s *RegistrySetup) RemoteOptions() []remote.Option {
	opts := []remote.Option{remote.WithTransport(s.HTTPClient().Transport)}
	if s.User != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: s.User, Password: s.Password}))
	}
	return opts
}

// Push writes img to ADDR/repoTag as the set-up's user.
func (s *RegistrySetup) Push(t testing.TB, repoTag string, img v1.Image) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s.Ref(repoTag))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, s.RemoteOptions()...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return ref
}

// Descriptor returns the descriptor of ADDR/ref's manifest (a tag or a
// digest), read directly as the set-up's user.
func (s *RegistrySetup) Descriptor(t testing.TB, ref string) *remote.Descriptor {
	t.Helper()
	r, err := name.ParseReference(s.Ref(ref))
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Get(r, s.RemoteOptions()...)
	if err != nil {
		t.Fatalf("get %s: %v", r, err)
	}
	return d
}

// Image reads ADDR/ref back as the set-up's user.
func (s *RegistrySetup) Image(t testing.TB, ref string) v1.Image {
	t.Helper()
	img, err := s.Descriptor(t, ref).Image()
	if err != nil {
		t.Fatalf("image %s: %v", ref, err)
	}
	return img
}

// VerifiedBlob is a blob VerifyBlobs fetched and checked.
type VerifiedBlob struct {
	Digest    v1.Hash
	Size      int64
	MediaType string
}

// VerifyBlobs fetches the manifest at ADDR/ref directly from the registry
// (an image, or an index and every image in it) and then every blob it
// references, one GET each, and checks that each blob's SHA-256 and size
// are the descriptor's. It fails the test on the first difference, and
// returns the manifest's digest and the blobs checked.
func (s *RegistrySetup) VerifyBlobs(t testing.TB, ref string) (v1.Hash, []VerifiedBlob) {
	t.Helper()
	d := s.Descriptor(t, ref)
	var blobs []VerifiedBlob
	repo := strings.SplitN(ref, "@", 2)[0]
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	var manifests [][]byte
	var mts []types.MediaType
	if d.MediaType.IsIndex() {
		idx, err := d.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range im.Manifests {
			child := s.Descriptor(t, repo+"@"+m.Digest.String())
			if child.Digest != m.Digest {
				t.Fatalf("%s: index entry %s, registry served %s", ref, m.Digest, child.Digest)
			}
			manifests = append(manifests, child.Manifest)
			mts = append(mts, child.MediaType)
		}
	} else {
		manifests = append(manifests, d.Manifest)
		mts = append(mts, d.MediaType)
	}
	for i, raw := range manifests {
		if !mts[i].IsImage() {
			t.Fatalf("%s: manifest of media type %s, want an image", ref, mts[i])
		}
		m, err := v1.ParseManifest(strings.NewReader(string(raw)))
		if err != nil {
			t.Fatal(err)
		}
		for _, desc := range append([]v1.Descriptor{m.Config}, m.Layers...) {
			n, sum := s.fetchBlob(t, repo, desc.Digest)
			if n != desc.Size || sum != desc.Digest.Hex {
				t.Fatalf("%s: blob %s: registry served %d bytes with sha256 %s, manifest says %d bytes", ref, desc.Digest, n, sum, desc.Size)
			}
			blobs = append(blobs, VerifiedBlob{Digest: desc.Digest, Size: desc.Size, MediaType: string(desc.MediaType)})
		}
	}
	return d.Digest, blobs
}

// fetchBlob GETs a blob of repo (through go-containerregistry's transport
// for authentication, but hashing the raw bytes itself) and returns its
// size and hex SHA-256.
func (s *RegistrySetup) fetchBlob(t testing.TB, repo string, h v1.Hash) (int64, string) {
	t.Helper()
	r, err := name.NewRepository(s.Addr + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	l, err := remote.Layer(r.Digest(h.String()), s.RemoteOptions()...)
	if err != nil {
		t.Fatalf("blob %s of %s: %v", h, r, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatalf("blob %s of %s: %v", h, r, err)
	}
	defer rc.Close()
	sum := sha256.New()
	n, err := io.Copy(sum, rc)
	if err != nil {
		t.Fatalf("read blob %s of %s: %v", h, r, err)
	}
	return n, hex.EncodeToString(sum.Sum(nil))
}

// HasBlob reports whether repo of the registry has the blob h (HEAD 200).
func (s *RegistrySetup) HasBlob(t testing.TB, repo string, h v1.Hash) bool {
	t.Helper()
	r, err := name.NewRepository(s.Addr + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	l, err := remote.Layer(r.Digest(h.String()), s.RemoteOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Size(); err != nil {
		return false
	}
	return true
}

// String names the set-up and its address.
func (s *RegistrySetup) String() string { return fmt.Sprintf("%s registry %s", s.Name, s.Addr) }

// RegistryLog returns the registry's log, for failure messages.
func (s *RegistrySetup) RegistryLog() string {
	b, _ := os.ReadFile(filepath.Join(s.Registry.Dir, "registry.log"))
	return string(b)
}

// FaultProxy starts a harness.FaultProxy in front of the set-up's registry
// (trusting its CA) until the test ends. The proxy itself is plain HTTP on
// 127.0.0.1.
func (s *RegistrySetup) FaultProxy(t testing.TB, o harness.FaultOptions) *harness.FaultProxy {
	t.Helper()
	o.TargetCA = s.CA
	p, err := harness.NewFaultProxy(s.Scheme+"://"+s.Addr, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// FaultProxy starts a harness.FaultProxy in front of the plain-HTTP
// registry at target ("host:port") until the test ends.
func FaultProxy(t testing.TB, target string, o harness.FaultOptions) *harness.FaultProxy {
	t.Helper()
	p, err := harness.NewFaultProxy(target, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// RecordingProxy is a FaultProxy without faults: it records what went
// through (uploads and their bytes, mounts, blob downloads, manifest PUTs).
func RecordingProxy(t testing.TB, target string) *harness.FaultProxy {
	t.Helper()
	return FaultProxy(t, target, harness.FaultOptions{})
}
