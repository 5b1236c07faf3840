package cli

import (
	"encoding/json"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kiln-build/kiln/pkg/progress"
)

// testRegistry is go-containerregistry's in-process registry made to keep
// blobs per repository (HEAD and GET of a blob another repository holds
// are 404; POST ?mount=&from= mounts when the source has it, as the
// distribution server does), counting the blob bytes that go up and down.
type testRegistry struct {
	host string

	mu   sync.Mutex
	have map[string]map[string]bool

	upBytes     atomic.Int64 // PATCH/PUT bodies of blob uploads
	downBytes   atomic.Int64 // GET bodies of blobs
	downloaded  []string     // digests of blob GETs
	mounts      atomic.Int64
	manifestPut atomic.Int64
	// before, if set, runs first and may answer the request itself.
	before func(w http.ResponseWriter, r *http.Request) bool
}

func startRegistry(t *testing.T) *testRegistry {
	t.Helper()
	tr := &testRegistry{have: map[string]map[string]bool{}}
	inner := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tr.before != nil && tr.before(w, r) {
			return
		}
		tr.serve(inner, w, r)
	}))
	t.Cleanup(srv.Close)
	tr.host = strings.TrimPrefix(srv.URL, "http://")
	return tr
}

func splitV2(path string) (repo, kind, rest string) {
	p := strings.TrimPrefix(path, "/v2/")
	for _, k := range []string{"/blobs/uploads", "/blobs/", "/manifests/"} {
		if i := strings.LastIndex(p, k); i >= 0 {
			return p[:i], strings.Trim(k, "/"), strings.TrimPrefix(p[i+len(k):], "/")
		}
	}
	return "", "", p
}

func (tr *testRegistry) mark(repo, d string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.have[repo] == nil {
		tr.have[repo] = map[string]bool{}
	}
	tr.have[repo][d] = true
}

func (tr *testRegistry) has(repo, d string) bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.have[repo][d]
}

type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (s *statusWriter) WriteHeader(c int) { s.status = c; s.ResponseWriter.WriteHeader(c) }
func (s *statusWriter) Write(p []byte) (int, error) {
	n, err := s.ResponseWriter.Write(p)
	s.n += int64(n)
	return n, err
}

type countBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (tr *testRegistry) serve(inner http.Handler, w http.ResponseWriter, r *http.Request) {
	repo, kind, rest := splitV2(r.URL.Path)
	switch {
	case kind == "blobs" && (r.Method == http.MethodHead || r.Method == http.MethodGet):
		if !tr.has(repo, rest) {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		inner.ServeHTTP(sw, r)
		if r.Method == http.MethodGet {
			tr.downBytes.Add(sw.n)
			tr.mu.Lock()
			tr.downloaded = append(tr.downloaded, rest)
			tr.mu.Unlock()
		}
		return
	case kind == "blobs/uploads" && r.Method == http.MethodPost && r.URL.Query().Get("mount") != "":
		d, from := r.URL.Query().Get("mount"), r.URL.Query().Get("from")
		if tr.has(from, d) {
			tr.mark(repo, d)
			tr.mounts.Add(1)
			w.Header().Set("Docker-Content-Digest", d)
			w.WriteHeader(http.StatusCreated)
			return
		}
		r.URL.RawQuery = ""
	case kind == "blobs/uploads":
		if r.Body != nil {
			r.Body = countBody{r.Body, &tr.upBytes}
		}
		if r.Method == http.MethodPut || (r.Method == http.MethodPost && r.URL.Query().Get("digest") != "") {
			sw := &statusWriter{ResponseWriter: w}
			inner.ServeHTTP(sw, r)
			if sw.status == http.StatusCreated {
				tr.mark(repo, r.URL.Query().Get("digest"))
			}
			return
		}
	case kind == "manifests" && r.Method == http.MethodPut:
		tr.manifestPut.Add(1)
	}
	inner.ServeHTTP(w, r)
}

// seed pushes a random image to ref with go-containerregistry alone.
func (tr *testRegistry) seed(t *testing.T, ref string, size, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(size, layers)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(tr.host + "/" + ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return img
}

// fetched reports whether blob d was ever downloaded.
func (tr *testRegistry) fetched(d string) bool { return tr.fetchCount(d) > 0 }

// fetchCount is how many times blob d was downloaded.
func (tr *testRegistry) fetchCount(d string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, x := range tr.downloaded {
		if x == d {
			n++
		}
	}
	return n
}

// remoteDigest is the digest ref names in the registry.
func (tr *testRegistry) remoteDigest(t *testing.T, ref string) string {
	t.Helper()
	r, err := name.ParseReference(tr.host + "/" + ref)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Head(r)
	if err != nil {
		t.Fatalf("%s: %v", ref, err)
	}
	return d.Digest.String()
}

// isolateAuth points every credential location at an empty home.
func isolateAuth(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	for _, k := range []string{"XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "DOCKER_CONFIG", "REGISTRY_AUTH_FILE",
		"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"} {
		t.Setenv(k, "")
	}
	return home
}

// buildApp builds FROM base (a registry reference, or scratch) with one
// file of size bytes, tagged with tags.
func buildApp(t *testing.T, root, base string, size int, extra []string, tags ...string) string {
	t.Helper()
	dir := t.TempDir()
	content := make([]byte, size)
	rng := rand.New(rand.NewPCG(uint64(size), 7))
	for i := range content {
		content[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(filepath.Join(dir, "app.bin"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+base+"\nCOPY app.bin /app.bin\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--progress", "plain", "build", "--timestamp", "0"}
	for _, tg := range tags {
		args = append(args, "-t", tg)
	}
	args = append(args, extra...)
	args = append(args, dir)
	out, errOut, err := run(t, root, "", args...)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, errOut)
	}
	return strings.TrimSpace(out)
}

var pushedLine = regexp.MustCompile(`^(\S+): digest: (sha256:[0-9a-f]{64}) size: (\d+)$`)

func TestPush(t *testing.T) {
	isolateAuth(t)
	reg := startRegistry(t)
	root := t.TempDir()
	buildApp(t, root, "scratch", 100_000, nil, reg.host+"/team/app:1")

	digestFile := filepath.Join(t.TempDir(), "sub", "digest")
	out, errOut, err := run(t, root, "", "--progress", "plain", "push", "--digestfile", digestFile, reg.host+"/team/app:1")
	if err != nil {
		t.Fatalf("push: %v\n%s", err, errOut)
	}
	m := pushedLine.FindStringSubmatch(strings.TrimSpace(out))
	if m == nil || m[1] != reg.host+"/team/app:1" {
		t.Fatalf("stdout %q", out)
	}
	if got := reg.remoteDigest(t, "team/app:1"); got != m[2] {
		t.Errorf("registry has %s, push said %s", got, m[2])
	}
	if b, err := os.ReadFile(digestFile); err != nil || string(b) != m[2] {
		t.Errorf("--digestfile holds %q (%v), want %s", b, err, m[2])
	}
	if !strings.Contains(errOut, "The push refers to repository ["+reg.host+"/team/app]") ||
		!regexp.MustCompile(`(?m)^[0-9a-f]{12}: Pushed$`).MatchString(errOut) {
		t.Errorf("stderr %q", errOut)
	}
	firstUp := reg.upBytes.Load()
	if firstUp < 100_000/20 {
		t.Errorf("first push uploaded only %d bytes", firstUp)
	}

	// Re-push under another tag: only the manifest goes.
	manifests := reg.manifestPut.Load()
	out, errOut, err = run(t, root, "", "--progress", "plain", "push", "-q", reg.host+"/team/app:1", reg.host+"/team/app:2")
	if err != nil {
		t.Fatalf("re-push: %v\n%s", err, errOut)
	}
	if strings.TrimSpace(out) != m[2] || errOut != "" {
		t.Errorf("-q: stdout %q, stderr %q; want only the digest", out, errOut)
	}
	if up := reg.upBytes.Load() - firstUp; up != 0 {
		t.Errorf("re-push uploaded %d blob bytes, want 0", up)
	}
	if reg.manifestPut.Load() != manifests+1 {
		t.Errorf("re-push put %d manifests, want 1", reg.manifestPut.Load()-manifests)
	}
	t.Logf("first push: %d blob bytes up; re-push: 0 blob bytes, 1 manifest", firstUp)

	// Plain lines for existing layers.
	_, errOut, err = run(t, root, "", "--progress", "plain", "push", reg.host+"/team/app:1")
	if err != nil || !regexp.MustCompile(`(?m)^[0-9a-f]{12}: Layer already exists$`).MatchString(errOut) {
		t.Errorf("push again: %v, stderr %q", err, errOut)
	}

	// JSON progress: one object per line.
	_, errOut, err = run(t, root, "", "--progress", "json", "push", reg.host+"/team/app:1", reg.host+"/other/app:1")
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, l := range strings.Split(strings.TrimSpace(errOut), "\n") {
		var e progress.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("--progress=json line %q: %v", l, err)
		}
		actions = append(actions, string(e.Action))
	}
	// The blobs are already in the registry (team/app): the push to
	// other/app mounts them and sends no layer byte.
	if got := strings.Join(actions, ","); !strings.Contains(got, "manifest") || !strings.Contains(got, "mounted") || strings.Contains(got, "done") {
		t.Errorf("json actions %v", actions)
	}
}

func TestPushMountsSourcedBaseLayers(t *testing.T) {
	isolateAuth(t)
	reg := startRegistry(t)
	base := reg.seed(t, "library/base:1", 200_000, 3)
	seedUp := reg.upBytes.Load()
	root := t.TempDir()
	buildApp(t, root, reg.host+"/library/base:1", 5000, nil, reg.host+"/team/app:1")
	layers, _ := base.Layers()
	var baseBytes int64
	for _, l := range layers {
		n, _ := l.Size()
		baseBytes += n
	}
	// /app.bin may be a directory of the base (then COPY writes into it, as
	// BuildKit does): the build reads each base layer once for its path
	// index and keeps the index, never the layer.
	fetchedByBuild := map[string]int{}
	for _, l := range layers {
		d, _ := l.Digest()
		fetchedByBuild[d.String()] = reg.fetchCount(d.String())
		if n := reg.fetchCount(d.String()); n > 1 {
			t.Errorf("the build fetched base layer %s %d times, want at most once (for its index)", d, n)
		}
	}
	down := reg.downBytes.Load()
	out, errOut, err := run(t, root, "", "--progress", "plain", "push", reg.host+"/team/app:1")
	if err != nil {
		t.Fatalf("push: %v\n%s", err, errOut)
	}
	if n := strings.Count(errOut, ": Mounted from library/base"); n != 3 {
		t.Errorf("%d layers mounted, want 3:\n%s", n, errOut)
	}
	if d := reg.downBytes.Load() - down; d != 0 {
		t.Errorf("push downloaded %d blob bytes; the base layers must be mounted", d)
	}
	for d, n := range fetchedByBuild {
		if reg.fetchCount(d) != n {
			t.Errorf("push downloaded base layer %s", d)
		}
	}
	// A second build on the same store reads the indexes, not the layers.
	buildApp(t, root, reg.host+"/library/base:1", 5000, nil, reg.host+"/team/app:2")
	for d, n := range fetchedByBuild {
		if reg.fetchCount(d) != n {
			t.Errorf("the second build downloaded base layer %s again", d)
		}
	}
	// Uploaded: the COPY layer and the config, nowhere near the base.
	up := reg.upBytes.Load() - seedUp
	if up < 5000 || up > 8000 {
		t.Errorf("uploaded %d bytes (new layer 5000 bytes before compression, base layers %d)", up, baseBytes)
	}
	m := pushedLine.FindStringSubmatch(strings.TrimSpace(out))
	if m == nil || reg.remoteDigest(t, "team/app:1") != m[2] {
		t.Errorf("stdout %q", out)
	}
	t.Logf("push of a store image on a %d-byte base: %d mounts, %d blob bytes up, %d layer bytes down", baseBytes, reg.mounts.Load(), up, reg.downBytes.Load()-down)
}

func TestBuildPushThreeTags(t *testing.T) {
	isolateAuth(t)
	reg := startRegistry(t)
	root := t.TempDir()
	digestFile := filepath.Join(t.TempDir(), "digest")
	tags := []string{reg.host + "/team/app:1.2.3", reg.host + "/team/app:latest", reg.host + "/release/app:1.2.3"}
	id := buildApp(t, root, "scratch", 50_000, []string{"--push", "--digestfile", digestFile}, tags...)
	if !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("build stdout %q", id)
	}
	b, err := os.ReadFile(digestFile)
	if err != nil || !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).Match(b) {
		t.Fatalf("--digestfile %q %v", b, err)
	}
	for _, tg := range []string{"team/app:1.2.3", "team/app:latest", "release/app:1.2.3"} {
		if got := reg.remoteDigest(t, tg); got != string(b) {
			t.Errorf("%s is %s, want %s", tg, got, b)
		}
	}
	// Each blob went up once; the second repository mounted them.
	if reg.mounts.Load() != 2 {
		t.Errorf("%d mounts, want 2 (layer and config into release/app)", reg.mounts.Load())
	}
	up := reg.upBytes.Load()
	buildApp(t, t.TempDir(), "scratch", 50_000, []string{"--push"}, reg.host+"/single/app:1")
	if single := reg.upBytes.Load() - up; single != up {
		t.Errorf("three tags uploaded %d bytes, one tag %d", up, single)
	}

	// --push without -t is refused before building.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\n"), 0o644)
	if _, _, err := run(t, root, "", "build", "--push", dir); err == nil || !strings.Contains(err.Error(), "--push needs at least one -t") {
		t.Errorf("--push without -t: %v", err)
	}
}

func TestPushErrors(t *testing.T) {
	isolateAuth(t)
	reg := startRegistry(t)
	root := t.TempDir()
	id := buildApp(t, root, "scratch", 1000, nil, reg.host+"/team/app:1")

	cases := map[string][]string{
		`image "nope:1" not found`:                {"push", "nope:1"},
		`is not a name to push to`:                {"push", id},
		`a destination names a tag, not a digest`: {"push", reg.host + "/team/app:1", reg.host + "/x@sha256:" + strings.Repeat("a", 64)},
		`invalid reference "UPPER/x:1"`:           {"push", reg.host + "/team/app:1", "UPPER/x:1"},
		`--jobs 0: want at least 1`:               {"--jobs", "0", "push", reg.host + "/team/app:1"},
		`invalid argument "fancy" for "--progress" flag: invalid progress mode "fancy"`: {"--progress", "fancy", "push", reg.host + "/team/app:1"},
		`invalid registry mirror "ftp://m"`:                                             {"--registry-mirror", "ftp://m", "push", reg.host + "/team/app:1"},
		`--creds: invalid credentials`:                                                  {"push", "--creds", ":pw", reg.host + "/team/app:1"},
		`--all-tags pushes a repository's tags`:                                         {"push", "-a", reg.host + "/team/app", reg.host + "/x"},
		`cannot reach registry 127.0.0.1:1: connection refused`:                         {"--retry", "0", "push", reg.host + "/team/app:1", "127.0.0.1:1/x:1"},
	}
	for want, args := range cases {
		_, _, err := run(t, root, "", args...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: error %v, want %q", args, err, want)
		}
	}

	// ECR's answer to overwriting an immutable tag.
	reg.before = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"errors":[{"code":"TAG_INVALID","message":"The image tag '1' already exists in the 'team/app' repository and cannot be overwritten because the repository is immutable."}]}`)
			return true
		}
		return false
	}
	_, _, err := run(t, root, "", "push", reg.host+"/team/app:1")
	if err == nil || !strings.Contains(err.Error(), "does not allow tags to be overwritten (immutable tags)") ||
		!strings.Contains(err.Error(), reg.host+"/team/app:1") {
		t.Errorf("immutable tag: %v", err)
	}
	// A registry that refuses the media type.
	reg.before = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnsupportedMediaType)
			io.WriteString(w, `{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":"unsupported media type"}]}`)
			return true
		}
		return false
	}
	_, _, err = run(t, root, "", "push", reg.host+"/team/app:1")
	if err == nil || !strings.Contains(err.Error(), "does not accept this manifest's media type") {
		t.Errorf("unsupported media type: %v", err)
	}
	// Rate limiting, after the retries.
	reg.before = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}`)
			return true
		}
		return false
	}
	_, _, err = run(t, root, "", "--retry", "1", "push", reg.host+"/team/app:1")
	if err == nil || !strings.Contains(err.Error(), "rate limited by "+reg.host) {
		t.Errorf("rate limited: %v", err)
	}
}

func TestPushAllTags(t *testing.T) {
	isolateAuth(t)
	reg := startRegistry(t)
	root := t.TempDir()
	buildApp(t, root, "scratch", 1000, nil, reg.host+"/team/app:1", reg.host+"/team/app:2")
	buildApp(t, root, "scratch", 2000, nil, reg.host+"/team/app:3")
	out, errOut, err := run(t, root, "", "push", "--all-tags", reg.host+"/team/app")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("stdout %q", out)
	}
	for _, l := range lines {
		m := pushedLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("line %q", l)
		}
		if got := reg.remoteDigest(t, strings.TrimPrefix(m[1], reg.host+"/")); got != m[2] {
			t.Errorf("%s: registry %s, said %s", m[1], got, m[2])
		}
	}
}
