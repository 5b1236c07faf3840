package registry

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/internal/testutil"
	plat "github.com/kiln-build/kiln/pkg/platform"
)

func TestImageBasicAuth(t *testing.T) {
	home := isolateEnv(t)
	const user, pass = "alice", "correct-horse-battery"
	host := newRegistry(t, basicAuth(user, pass))
	seeded := seedImage(t, host+"/team/app:1", &authn.Basic{Username: user, Password: pass}, 1024, 2)

	// Credentials from ~/.docker/config.json.
	cfgFile := filepath.Join(home, ".docker", "config.json")
	writeAuthFile(t, cfgFile, map[string]string{host: user + ":" + pass}, nil)
	o := fastOpts()
	ref := mustRef(t, host+"/team/app:1", o)
	img, desc, err := New(o).Image(context.Background(), ref, nil)
	if err != nil {
		t.Fatalf("Image: %v", err)
	}
	if want := testutil.Digest(t, seeded); desc.Digest != want || testutil.Digest(t, img) != want {
		t.Fatalf("digest %s / %s, want %s", desc.Digest, testutil.Digest(t, img), want)
	}
	testutil.CheckLayers(t, img)

	// A wrong password: the error names the registry and the file, not the password.
	const wrong = "wrong-password-123"
	writeAuthFile(t, cfgFile, map[string]string{host: user + ":" + wrong}, nil)
	_, _, err = New(o).Image(context.Background(), ref, nil)
	if err == nil {
		t.Fatal("Image with a wrong password succeeded")
	}
	msg := err.Error()
	if !errors.Is(err, ErrUnauthorized) {
		t.Errorf("error %q is not ErrUnauthorized", msg)
	}
	for _, want := range []string{host, cfgFile, "rejected"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if strings.Contains(msg, wrong) || strings.Contains(fmt.Sprintf("%+v", err), wrong) {
		t.Errorf("error %q contains the password", msg)
	}

	// No credentials at all.
	writeAuthFile(t, cfgFile, nil, nil)
	_, err = New(o).Fetch(context.Background(), ref)
	if err == nil || !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "no credentials found for "+host+" in "+cfgFile) {
		t.Errorf("anonymous: error %v, want unauthorized naming %s and %s", err, host, cfgFile)
	}
	o.AuthFile = filepath.Join(home, "typo.json")
	_, err = New(o).Fetch(context.Background(), ref)
	if err == nil || !strings.Contains(err.Error(), "auth file "+o.AuthFile+" does not exist") {
		t.Errorf("missing --authfile: error %v, want it pointed out", err)
	}
}

func TestImageBearerAuth(t *testing.T) {
	isolateEnv(t)
	const user, pass = "bob", "tr0ub4dor&3"
	ba := newBearerAuth(user, pass)
	host := newRegistry(t, ba.wrap)
	seeded := seedImage(t, host+"/app:latest", &authn.Basic{Username: user, Password: pass}, 512, 3)

	authFile := filepath.Join(t.TempDir(), "auth.json")
	writeAuthFile(t, authFile, map[string]string{host: user + ":" + pass}, nil)
	o := fastOpts()
	o.AuthFile = authFile
	img, desc, err := New(o).Image(context.Background(), mustRef(t, host+"/app", o), nil)
	if err != nil {
		t.Fatalf("Image: %v", err)
	}
	if desc.Digest != testutil.Digest(t, seeded) {
		t.Fatalf("digest %s, want %s", desc.Digest, testutil.Digest(t, seeded))
	}
	testutil.CheckLayers(t, img)
	if ba.tokenReqs.Load() == 0 {
		t.Fatal("the token endpoint was never used")
	}

	const wrong = "not-the-password"
	writeAuthFile(t, authFile, map[string]string{host: user + ":" + wrong}, nil)
	_, _, err = New(o).Image(context.Background(), mustRef(t, host+"/app", o), nil)
	if err == nil {
		t.Fatal("Image with a wrong password succeeded")
	}
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), host) || !strings.Contains(err.Error(), authFile) {
		t.Errorf("error %q: want unauthorized naming %s and %s", err, host, authFile)
	}
	if strings.Contains(err.Error(), wrong) {
		t.Errorf("error %q contains the password", err)
	}
}

func TestImageIndexPlatform(t *testing.T) {
	isolateEnv(t)
	host := newRegistry(t, nil)
	amd := testutil.RandomImageOn(t, 1, v1.Platform{OS: "linux", Architecture: "amd64"})
	arm := testutil.RandomImageOn(t, 1, v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"})
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	idx = mutate.AppendManifests(idx,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	)
	o := fastOpts()
	ref := mustRef(t, host+"/multi:1", o)
	if err := New(o).Push(context.Background(), ref, idx); err != nil {
		t.Fatalf("PushIndex: %v", err)
	}

	for _, c := range []struct {
		platform string
		want     v1.Image
	}{
		{"linux/arm64", arm}, {"linux/arm64/v8", arm}, {"linux/aarch64", arm}, {"linux/amd64", amd},
	} {
		p, err := plat.Parse(c.platform)
		if err != nil {
			t.Fatal(err)
		}
		img, desc, err := New(o).Image(context.Background(), ref, p)
		if err != nil {
			t.Fatalf("%s: %v", c.platform, err)
		}
		want := testutil.Digest(t, c.want)
		if desc.Digest != want || testutil.Digest(t, img) != want {
			t.Errorf("%s: got %s, want %s", c.platform, desc.Digest, want)
		}
		if desc.Platform == nil || plat.Score(*p, *desc.Platform) != 2 {
			t.Errorf("%s: descriptor platform %v", c.platform, desc.Platform)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != p.Architecture {
			t.Errorf("%s: config architecture %s", c.platform, cf.Architecture)
		}
	}

	// nil platform: the host's (linux/GOARCH); amd64 and arm64 are both present.
	host0 := plat.Default()
	if host0.Architecture == "amd64" || host0.Architecture == "arm64" {
		_, desc, err := New(o).Image(context.Background(), ref, nil)
		if err != nil {
			t.Fatal(err)
		}
		if desc.Platform == nil || desc.Platform.Architecture != host0.Architecture {
			t.Errorf("nil platform chose %v, want %s", desc.Platform, plat.Format(host0))
		}
	}

	_, _, err := New(o).Image(context.Background(), ref, &v1.Platform{OS: "linux", Architecture: "s390x"})
	if err == nil || !errors.Is(err, ErrNoPlatform) {
		t.Fatalf("s390x: error %v, want ErrNoPlatform", err)
	}
	for _, want := range []string{"linux/s390x", "linux/amd64", "linux/arm64/v8", ref.String()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("no-match error %q does not mention %q", err, want)
		}
	}

	plats, isIndex, err := New(o).Platforms(context.Background(), ref)
	if err != nil || !isIndex || len(plats) != 2 {
		t.Fatalf("Platforms: %v, %v, %v", plats, isIndex, err)
	}
	if plat.Format(plats[0]) != "linux/amd64" || plat.Format(plats[1]) != "linux/arm64/v8" {
		t.Errorf("Platforms = %v", plats)
	}
	// A single image reports its config's platform.
	single := mustRef(t, host+"/single:1", o)
	if err := New(o).Push(context.Background(), single, arm); err != nil {
		t.Fatal(err)
	}
	plats, isIndex, err = New(o).Platforms(context.Background(), single)
	if err != nil || isIndex || len(plats) != 1 || plat.Format(plats[0]) != "linux/arm64/v8" {
		t.Errorf("New(single).Platforms() = %v, %v, %v", plats, isIndex, err)
	}
}

func TestImageIsLazy(t *testing.T) {
	isolateEnv(t)
	host := newRegistry(t, nil)
	seeded := seedImage(t, host+"/lazy:1", nil, 64<<10, 3)
	stats := &Stats{}
	o := fastOpts()
	o.Stats = stats
	ref := mustRef(t, host+"/lazy:1", o)

	img, _, err := New(o).Image(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := stats.BlobBytesDownloaded(); n != 0 {
		t.Fatalf("Image downloaded %d blob bytes before anything was asked", n)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.RootFS.DiffIDs) != 3 {
		t.Fatalf("config has %d diff IDs", len(cf.RootFS.DiffIDs))
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers { // digests and sizes come from the manifest
		if _, err := l.Size(); err != nil {
			t.Fatal(err)
		}
		if _, err := l.DiffID(); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := seeded.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := stats.LayerBlobsDownloaded(); got != 0 {
		t.Errorf("Image+ConfigFile+Layers: %d layer blobs downloaded, want 0", got)
	}
	if got := stats.LayerBytesDownloaded(); got != 0 {
		t.Errorf("Image+ConfigFile+Layers: %d layer bytes downloaded, want 0", got)
	}
	if got := stats.ConfigBlobsDownloaded(); got != 1 {
		t.Errorf("%d config blobs downloaded, want 1", got)
	}
	if got := stats.BlobBytesDownloaded(); got != int64(len(raw)) {
		t.Errorf("%d blob bytes downloaded, want the config's %d", got, len(raw))
	}

	// Reading one layer downloads exactly that layer.
	rc, err := layers[1].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	size, _ := layers[1].Size()
	if n != size {
		t.Fatalf("read %d bytes, layer size %d", n, size)
	}
	if got := stats.LayerBlobsDownloaded(); got != 1 {
		t.Errorf("after reading a layer: %d layer blobs, want 1", got)
	}
	if got := stats.LayerBytesDownloaded(); got != size {
		t.Errorf("after reading a layer: %d layer bytes, want %d", got, size)
	}
	if got := stats.BlobBytesDownloaded(); got != size+int64(len(raw)) {
		t.Errorf("after reading a layer: %d blob bytes, want %d", got, size+int64(len(raw)))
	}
	if stats.Requests() == 0 || stats.ManifestsDownloaded() != 1 {
		t.Errorf("requests %d, manifests %d", stats.Requests(), stats.ManifestsDownloaded())
	}
}

func TestPushFlaky(t *testing.T) {
	isolateEnv(t)
	f := &flaky{}
	flakyHost := newRegistry(t, f.wrap)
	img, err := random.Image(200<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	stats := &Stats{}
	o := fastOpts()
	o.Stats = stats
	ref := mustRef(t, flakyHost+"/flaky/app:1", o)
	if err := New(o).Push(context.Background(), ref, img); err != nil {
		t.Fatalf("Push through a flaky registry: %v", err)
	}
	if f.failures.Load() == 0 || f.resets.Load() == 0 {
		t.Fatalf("the flaky handler failed %d requests (%d resets): the test proves nothing", f.failures.Load(), f.resets.Load())
	}
	// Pull it back (through the same flaky handler) and compare.
	got, desc, err := New(o).Image(context.Background(), ref, nil)
	if err != nil {
		t.Fatalf("Image: %v", err)
	}
	if desc.Digest != testutil.Digest(t, img) {
		t.Fatalf("pushed %s, registry has %s", testutil.Digest(t, img), desc.Digest)
	}
	testutil.CheckLayers(t, got)
	var total int64
	layers, _ := img.Layers()
	for _, l := range layers {
		s, _ := l.Size()
		total += s
	}
	if stats.BlobBytesUploaded() < total {
		t.Errorf("uploaded %d blob bytes, layers total %d", stats.BlobBytesUploaded(), total)
	}
	t.Logf("flaky: %d of %d requests failed (%d resets); %s", f.failures.Load(), f.n.Load(), f.resets.Load(), stats)
}

func TestPushSkipsExistingAndMounts(t *testing.T) {
	isolateEnv(t)
	host := newRegistry(t, nil)
	seedImage(t, host+"/base:1", nil, 100<<10, 2)
	o := fastOpts()
	base, _, err := New(o).Image(context.Background(), mustRef(t, host+"/base:1", o), nil)
	if err != nil {
		t.Fatal(err)
	}
	top, err := random.Layer(1024, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	derived, err := mutate.AppendLayers(base, top)
	if err != nil {
		t.Fatal(err)
	}
	stats := &Stats{}
	o.Stats = stats
	if err := New(o).Push(context.Background(), mustRef(t, host+"/derived:1", o), derived); err != nil {
		t.Fatal(err)
	}
	topSize, _ := top.Size()
	// The base layers are mounted, never downloaded nor uploaded.
	if stats.LayerBlobsDownloaded() != 0 {
		t.Errorf("push downloaded %d base layers", stats.LayerBlobsDownloaded())
	}
	if up := stats.BlobBytesUploaded(); up > topSize+8<<10 {
		t.Errorf("push uploaded %d bytes; only the new %d-byte layer and the config should go", up, topSize)
	}
	// Pushing again uploads nothing.
	before := stats.BlobBytesUploaded()
	if err := New(o).Push(context.Background(), mustRef(t, host+"/derived:2", o), derived); err != nil {
		t.Fatal(err)
	}
	if stats.BlobBytesUploaded() != before {
		t.Errorf("second push uploaded %d bytes", stats.BlobBytesUploaded()-before)
	}
}

func TestFetchErrors(t *testing.T) {
	isolateEnv(t)
	host := newRegistry(t, nil)
	seedImage(t, host+"/exists:1", nil, 128, 1)
	o := fastOpts()

	desc, err := New(o).Fetch(context.Background(), mustRef(t, host+"/exists:1", o))
	if err != nil || desc.Digest.Hex == "" {
		t.Fatalf("Fetch: %v, %v", desc, err)
	}

	_, err = New(o).Fetch(context.Background(), mustRef(t, host+"/exists:nope", o))
	if want := host + "/exists:nope: manifest unknown"; err == nil || err.Error() != want || !errors.Is(err, ErrManifestUnknown) {
		t.Errorf("missing tag: error %v, want %q", err, want)
	}
	_, err = New(o).Fetch(context.Background(), mustRef(t, host+"/nothere:1", o))
	if err == nil || (!errors.Is(err, ErrNameUnknown) && !errors.Is(err, ErrManifestUnknown)) || !strings.Contains(err.Error(), "nothere") {
		t.Errorf("missing repo: error %v", err)
	}

	// A closed port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	_, err = New(o).Fetch(context.Background(), mustRef(t, dead+"/x:1", o))
	if err == nil || !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "cannot reach registry "+dead) {
		t.Errorf("closed port: error %v, want cannot reach registry %s", err, dead)
	}

	// 429 everywhere: bounded retries, then a clear error.
	var hits atomic.Int64
	limited := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}`)
	}))
	defer limited.Close()
	lhost := strings.TrimPrefix(limited.URL, "http://")
	o2 := fastOpts()
	o2.Retries = 2
	_, err = New(o2).Fetch(context.Background(), mustRef(t, lhost+"/x:1", o2))
	if err == nil || !errors.Is(err, ErrRateLimited) || !strings.Contains(err.Error(), "rate limited") {
		t.Errorf("429: error %v, want rate limited", err)
	}
	// The ping (the first request) is retried twice and then gives up.
	if h := hits.Load(); h < 3 || h > 6 {
		t.Errorf("429: %d requests, want 3 (1 + 2 retries) and at most a few more", h)
	}
	o2.Retries = -1
	hits.Store(0)
	_, _ = New(o2).Fetch(context.Background(), mustRef(t, lhost+"/x:1", o2))
	if h := hits.Load(); h != 1 {
		t.Errorf("Retries -1: %d requests, want 1", h)
	}

	// A cancelled context stops at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := New(o).Fetch(ctx, mustRef(t, host+"/exists:1", o)); err == nil || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: error %v", err)
	}
}

func TestTLS(t *testing.T) {
	isolateEnv(t)
	srv := httptest.NewUnstartedServer(newRegistryHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "https://")
	// httptest's certificate is for 127.0.0.1 and example.com; the loopback
	// heuristic would allow plain HTTP but the server only speaks TLS.
	seedImage(t, host+"/tls:1", nil, 128, 1, remote.WithTransport(srv.Client().Transport))

	o := fastOpts()
	_, err := New(o).Fetch(context.Background(), mustRef(t, host+"/tls:1", o))
	if err == nil || !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted certificate: error %v", err)
	}

	certDir := t.TempDir()
	writePEM(t, filepath.Join(certDir, "test-ca.crt"), srv.Certificate().Raw)
	o.CertDir = certDir
	if _, err := New(o).Fetch(context.Background(), mustRef(t, host+"/tls:1", o)); err != nil {
		t.Fatalf("with CertDir: %v", err)
	}

	o = fastOpts()
	o.Insecure = []string{host}
	if _, err := New(o).Fetch(context.Background(), mustRef(t, host+"/tls:1", o)); err != nil {
		t.Fatalf("with Insecure: %v", err)
	}
	f := false
	o = fastOpts()
	o.TLSVerify = &f
	if _, err := New(o).Fetch(context.Background(), mustRef(t, host+"/tls:1", o)); err != nil {
		t.Fatalf("with TLSVerify=false: %v", err)
	}

	o = fastOpts()
	o.CertDir = filepath.Join(t.TempDir(), "missing")
	if _, err := New(o).Fetch(context.Background(), mustRef(t, host+"/tls:1", o)); err == nil || !strings.Contains(err.Error(), o.CertDir) {
		t.Errorf("missing CertDir: error %v, want one naming it", err)
	}

	// TLSVerify=true refuses plain HTTP even on loopback.
	plain := newRegistry(t, nil)
	tr := true
	o = fastOpts()
	o.TLSVerify = &tr
	if _, err := New(o).Fetch(context.Background(), mustRef(t, plain+"/x:1", o)); err == nil {
		t.Error("TLSVerify=true reached a plain-HTTP registry")
	}
}

func TestProxy(t *testing.T) {
	isolateEnv(t)
	var proxied atomic.Int64
	reg := newRegistryHandler()
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A forward proxy receives absolute URLs for the registry's name.
		if r.URL.Host != "registry.kiln.test:5000" {
			http.Error(w, "unexpected host "+r.URL.Host, http.StatusBadGateway)
			return
		}
		proxied.Add(1)
		reg.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("HTTPS_PROXY", "")
	o := fastOpts()
	o.Insecure = []string{"registry.kiln.test:5000"}
	ref := mustRef(t, "registry.kiln.test:5000/via/proxy:1", o)
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := New(o).Push(context.Background(), ref, img); err != nil {
		t.Fatalf("Push through proxy: %v", err)
	}
	if _, _, err := New(o).Image(context.Background(), ref, nil); err != nil {
		t.Fatalf("Image through proxy: %v", err)
	}
	if proxied.Load() == 0 {
		t.Fatal("nothing went through the proxy")
	}
	// NO_PROXY bypasses it (and the name does not resolve).
	t.Setenv("NO_PROXY", "kiln.test")
	_, err = New(o).Fetch(context.Background(), ref)
	if err == nil || !errors.Is(err, ErrUnreachable) {
		t.Errorf("NO_PROXY: error %v, want unreachable", err)
	}
}

func TestStatsRedirectedBlob(t *testing.T) {
	isolateEnv(t)
	// Blob GETs redirect to another server (like S3 behind a registry);
	// bytes read from the redirect target still count as blob bytes.
	reg := newRegistryHandler()
	var store atomic.Int64
	var regURL string
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		store.Add(1)
		req, _ := http.NewRequest(http.MethodGet, regURL+r.URL.Path, nil)
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, req)
		w.WriteHeader(rec.Code)
		_, _ = io.Copy(w, rec.Body)
	}))
	defer storage.Close()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			http.Redirect(w, r, storage.URL+r.URL.Path, http.StatusTemporaryRedirect)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer front.Close()
	regURL = front.URL
	host := strings.TrimPrefix(front.URL, "http://")
	seeded := seedImage(t, host+"/r:1", nil, 10<<10, 2)
	stats := &Stats{}
	o := fastOpts()
	o.Stats = stats
	img, _, err := New(o).Image(context.Background(), mustRef(t, host+"/r:1", o), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.ConfigFile(); err != nil {
		t.Fatal(err)
	}
	testutil.CheckLayers(t, img)
	if store.Load() != 3 {
		t.Fatalf("storage served %d blobs, want 3 (config + 2 layers)", store.Load())
	}
	var want int64
	layers, _ := seeded.Layers()
	for _, l := range layers {
		s, _ := l.Size()
		want += s
	}
	if stats.LayerBlobsDownloaded() != 2 || stats.LayerBytesDownloaded() != want || stats.ConfigBlobsDownloaded() != 1 {
		t.Errorf("stats after redirected pulls: %s; want 2 layers of %d bytes and 1 config", stats, want)
	}
}

func TestClassifyPath(t *testing.T) {
	cases := []struct {
		path  string
		kind  requestKind
		ident string
	}{
		{"/v2/a/b/blobs/sha256:abc", kindBlob, "sha256:abc"},
		{"/v2/a/blobs/uploads/", kindUpload, ""},
		{"/v2/a/blobs/uploads/123-456", kindUpload, ""},
		{"/v2/a/b/manifests/latest", kindManifest, "latest"},
		{"/v2/blobs/manifests/sha256:abc", kindManifest, "sha256:abc"},
		{"/v2/", kindOther, ""},
		{"/token", kindOther, ""},
	}
	for _, c := range cases {
		kind, ident := classifyPath(c.path)
		if kind != c.kind || ident != c.ident {
			t.Errorf("classifyPath(%q) = %v, %q; want %v, %q", c.path, kind, ident, c.kind, c.ident)
		}
	}
}

// newRegistryHandler is the in-process registry as a handler.
func newRegistryHandler() http.Handler {
	return ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
}

func writePEM(t *testing.T, path string, der []byte) {
	t.Helper()
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
