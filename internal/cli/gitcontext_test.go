package cli

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/kiln-build/kiln/internal/testutil"
)

const gitSecret = "s3cret-git-tok-91"

// gitServer serves bare repositories under a temp directory with git
// http-backend behind basic auth (any user, password gitSecret), and
// returns its host and the repository app.git's commits: main's and
// feature's.
func gitServer(t *testing.T) (host, mainCommit, featureCommit string) {
	t.Helper()
	backend := "/usr/lib/git-core/git-http-backend"
	if _, err := os.Stat(backend); err != nil {
		t.Fatalf("git http-backend is missing (install git: .ci/deps): %v", err)
	}
	repos := t.TempDir()
	work := t.TempDir()
	git := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=kiln", "-c", "user.email=kiln@test", "-c", "init.defaultBranch=main"}, args...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	write := func(p, s string) {
		os.MkdirAll(filepath.Dir(filepath.Join(work, p)), 0o755)
		os.WriteFile(filepath.Join(work, p), []byte(s), 0o644)
	}
	git(repos, "init", "-q", "--bare", "app.git")
	git(work, "init", "-q")
	write("Dockerfile", "FROM scratch\nCOPY v.txt /v.txt\nLABEL v=main-root\n")
	write("v.txt", "main\n")
	write("sub/Dockerfile", "FROM scratch\nCOPY s.txt /s.txt\nLABEL v=main-sub\n")
	write("sub/s.txt", "sub\n")
	write("sub/Dockerfile.alt", "FROM scratch\nLABEL v=main-alt\n")
	git(work, "add", "-A")
	git(work, "commit", "-q", "-m", "main")
	mainCommit = git(work, "rev-parse", "HEAD")
	git(work, "checkout", "-q", "-b", "feature")
	write("sub/Dockerfile", "FROM scratch\nCOPY s.txt /s.txt\nLABEL v=feature-sub\n")
	git(work, "commit", "-q", "-am", "feature")
	featureCommit = git(work, "rev-parse", "HEAD")
	git(work, "push", "-q", filepath.Join(repos, "app.git"), "main", "feature")
	h := &cgi.Handler{Path: backend, Env: []string{"GIT_PROJECT_ROOT=" + repos, "GIT_HTTP_EXPORT_ALL=1"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, p, ok := r.BasicAuth(); !ok || p != gitSecret {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), mainCommit, featureCommit
}

// Git build contexts: docker's URL#REF:DIR and kaniko's git://, fetched
// from a git HTTP server with the credentials of GIT_AUTH_TOKEN,
// GIT_USERNAME/GIT_PASSWORD or the auth files, and never shown.
func TestBuildGitContext(t *testing.T) {
	home := isolateAuth(t)
	host, mainCommit, featureCommit := gitServer(t)
	repo := "http://" + host + "/app.git"
	root := t.TempDir()
	build := func(args ...string) (string, error) {
		t.Helper()
		_, errOut, err := run(t, root, "", append([]string{"build", "-t", "out:1"}, args...)...)
		if strings.Contains(errOut, gitSecret) || (err != nil && strings.Contains(err.Error(), gitSecret)) {
			t.Errorf("the git secret shows:\n%s\n%v", errOut, err)
		}
		if err != nil {
			return "", err
		}
		return builtLabel(t, root, "out:1"), nil
	}

	// No credentials: the server's refusal, naming the repository.
	if _, err := build(repo); err == nil || !strings.Contains(err.Error(), "git context "+repo) {
		t.Errorf("without credentials: %v", err)
	}
	t.Setenv("GIT_AUTH_TOKEN", gitSecret)
	for ctx, want := range map[string]string{
		repo:                                     "main-root",
		repo + "#main:sub":                       "main-sub",
		repo + "#feature:sub":                    "feature-sub",
		repo + "#" + featureCommit[:12] + ":sub": "feature-sub",
		repo + "#" + mainCommit + ":sub":         "main-sub",
		repo + "#refs/heads/feature:sub":         "feature-sub",
	} {
		if got, err := build(ctx); err != nil || got != want {
			t.Errorf("%s: label %q (%v), want %s", ctx, got, err, want)
		}
	}
	// -f names a file of the repository.
	if got, err := build("-f", "Dockerfile.alt", repo+"#main:sub"); err != nil || got != "main-alt" {
		t.Errorf("-f in a git context: %q %v", got, err)
	}
	t.Setenv("GIT_AUTH_TOKEN", "")
	// kaniko's variables, and its --context git:// (over HTTP when
	// GIT_PULL_METHOD says so).
	t.Setenv("GIT_USERNAME", "ci")
	t.Setenv("GIT_PASSWORD", gitSecret)
	t.Setenv("GIT_PULL_METHOD", "http")
	out := filepath.Join(t.TempDir(), "digest")
	if _, errOut, err := run(t, root, "", "executor", "--context", "git://"+host+"/app.git#refs/heads/feature", "--context-sub-path", "sub",
		"--no-push", "--digest-file", out); err != nil {
		t.Errorf("executor --context git://: %v\n%s", err, errOut)
	}
	if d, _ := os.ReadFile(out); !strings.HasPrefix(string(d), "sha256:") {
		t.Errorf("executor digest file %q", d)
	}
	t.Setenv("GIT_USERNAME", "")
	t.Setenv("GIT_PASSWORD", "")
	// The auth files: what kiln login (or docker login) wrote for the host.
	cfg := filepath.Join(home, ".docker")
	os.MkdirAll(cfg, 0o700)
	os.WriteFile(filepath.Join(cfg, "config.json"), []byte(`{"auths":{"`+host+`":{"auth":"`+base64.StdEncoding.EncodeToString([]byte("ci:"+gitSecret))+`"}}}`), 0o600)
	t.Setenv("DOCKER_CONFIG", cfg)
	if got, err := build(repo + "#feature:sub"); err != nil || got != "feature-sub" {
		t.Errorf("auth file credentials: %q %v", got, err)
	}
	for ctx, want := range map[string]string{
		repo + "#no-such-branch":            "git context " + repo + "#no-such-branch",
		repo + "#main:absent":               "absent: no such file or directory",
		repo + "#main:../..":                "must be a plain path",
		"http://ci:pw@" + host + "/app.git": "must not carry credentials",
	} {
		if _, err := build(ctx); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", ctx, err, want)
		}
	}
}

// TestProvenanceGitContext: a git context is recorded as BuildKit records
// it: invocation.configSource's uri (URL#ref) and sha1 digest (the commit
// built), and a material; the git token appears nowhere.
func TestProvenanceGitContext(t *testing.T) {
	isolateAuth(t)
	host, _, featureCommit := gitServer(t)
	repo := "http://" + host + "/app.git"
	root := t.TempDir()
	t.Setenv("GIT_AUTH_TOKEN", gitSecret)
	dest := filepath.Join(t.TempDir(), "oci")
	if _, errOut, err := run(t, root, "", "build", "--provenance=true", "--output", "type=oci,dest="+dest, repo+"#feature:sub"); err != nil {
		t.Fatalf("build: %v\n%s", err, errOut)
	}
	var pred struct {
		Materials []struct {
			URI    string            `json:"uri"`
			Digest map[string]string `json:"digest"`
		} `json:"materials"`
		Invocation struct {
			ConfigSource struct {
				URI        string            `json:"uri"`
				Digest     map[string]string `json:"digest"`
				EntryPoint string            `json:"entryPoint"`
			} `json:"configSource"`
		} `json:"invocation"`
	}
	raw := ociStatement(t, dest, "https://slsa.dev/provenance/v0.2")
	if strings.Contains(raw, gitSecret) {
		t.Errorf("the git token is in the provenance")
	}
	if err := testutil.CheckSLSAProvenance([]byte(raw)); err != nil {
		t.Errorf("the provenance of a git context: %v\n%s", err, raw)
	}
	var st struct {
		Predicate json.RawMessage `json:"predicate"`
	}
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(st.Predicate, &pred); err != nil {
		t.Fatal(err)
	}
	cs := pred.Invocation.ConfigSource
	if cs.URI != repo+"#feature" || cs.Digest["sha1"] != featureCommit || cs.EntryPoint != "Dockerfile" {
		t.Errorf("configSource: %+v, want %s#feature at %s", cs, repo, featureCommit)
	}
	found := false
	for _, m := range pred.Materials {
		found = found || (m.URI == repo+"#feature" && m.Digest["sha1"] == featureCommit)
	}
	if !found {
		t.Errorf("materials do not name the commit: %+v", pred.Materials)
	}
}

// ociStatement is the in-toto statement of predicateType in the OCI
// layout dir's attestation manifest.
func ociStatement(t *testing.T, dir, predicateType string) string {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("layout index: %v %v", im, err)
	}
	inner, err := idx.ImageIndex(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	iim, err := inner.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range iim.Manifests {
		if d.Annotations["vnd.docker.reference.type"] != "attestation-manifest" {
			continue
		}
		img, err := inner.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range m.Layers {
			if l.Annotations["in-toto.io/predicate-type"] != predicateType {
				continue
			}
			layer, err := img.LayerByDigest(l.Digest)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := layer.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
	t.Fatalf("no %s statement in %s", predicateType, dir)
	return ""
}
