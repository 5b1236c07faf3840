package cli

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kiln-build/kiln/internal/testutil"
)

// A kaniko job's command line, unchanged but for the binary: two
// destinations pushed, kaniko's digest files written, the registry cache
// derived from the destination, a tar of the image.
func TestExecutorKanikoJob(t *testing.T) {
	isolateAuth(t)
	reg := startRegistry(t)
	root := t.TempDir()
	ctx := t.TempDir()
	os.MkdirAll(filepath.Join(ctx, "docker"), 0o755)
	os.WriteFile(filepath.Join(ctx, "docker", "Dockerfile-build"), []byte("FROM scratch\nARG PIPELINE_ID_ARG\nLABEL pipeline=$PIPELINE_ID_ARG\nCOPY app.txt /app/\n"), 0o644)
	os.WriteFile(filepath.Join(ctx, "app.txt"), []byte("app"), 0o644)
	out := t.TempDir()
	d1, d2 := reg.host+"/team/app:1", reg.host+"/team/app:latest"
	_, stderr, err := run(t, root, "", "executor", "--context", "dir://"+ctx, "--dockerfile", "docker/Dockerfile-build",
		"--destination", d1, "--destination", d2, "--build-arg", "PIPELINE_ID_ARG=77",
		"--digest-file", filepath.Join(out, "digest"),
		"--image-name-with-digest-file", filepath.Join(out, "names"),
		"--image-name-tag-with-digest-file", filepath.Join(out, "tagged"),
		"--tar-path", filepath.Join(out, "image.tar"), "--cache=true", "--snapshot-mode=redo", "--cleanup")
	if err != nil {
		t.Fatalf("executor: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "--snapshot-mode has no effect") {
		t.Errorf("no note for a kaniko no-op flag:\n%s", stderr)
	}
	digest, _ := os.ReadFile(filepath.Join(out, "digest"))
	if !strings.HasPrefix(string(digest), "sha256:") {
		t.Fatalf("digest file %q", digest)
	}
	for _, tg := range []string{"team/app:1", "team/app:latest"} {
		if got := reg.remoteDigest(t, tg); got != string(digest) {
			t.Errorf("%s pushed as %s, digest file says %s", tg, got, digest)
		}
	}
	names, _ := os.ReadFile(filepath.Join(out, "names"))
	repo := reg.host + "/team/app"
	if want := repo + "@" + string(digest) + "\n" + repo + "@" + string(digest) + "\n"; string(names) != want {
		t.Errorf("image-name-with-digest-file %q, want %q", names, want)
	}
	tagged, _ := os.ReadFile(filepath.Join(out, "tagged"))
	if want := d1 + "@" + string(digest) + "\n" + d2 + "@" + string(digest) + "\n"; string(tagged) != want {
		t.Errorf("image-name-tag-with-digest-file %q, want %q", tagged, want)
	}
	tb, err := os.ReadFile(filepath.Join(out, "image.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if h, err := tar.NewReader(bytes.NewReader(tb)).Next(); err != nil || h == nil {
		t.Errorf("--tar-path is not a tar: %v", err)
	}
	if !strings.Contains(string(tb), "team/app:1") {
		t.Errorf("--tar-path archive does not name the destinations")
	}
}

func TestExecutorFlagErrors(t *testing.T) {
	root := t.TempDir()
	ctx := t.TempDir()
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM scratch\n"), 0o644)
	for want, args := range map[string][]string{
		"you must provide --destination, or use --no-push": {"executor", "--context", ctx},
		"not s3://":                                 {"executor", "--context", "s3://bucket/ctx.tar.gz", "--no-push"},
		"--dockerfile nope: not found":              {"executor", "--context", ctx, "--dockerfile", "nope", "--no-push"},
		`--verbosity "loud"`:                        {"executor", "--context", ctx, "--no-push", "--verbosity", "loud"},
		"unknown flag: --snapshot-modes":            {"executor", "--context", ctx, "--no-push", "--snapshot-modes=full"},
		`invalid argument "soon" for "--cache-ttl"`: {"executor", "--context", ctx, "--no-push", "--cache-ttl=soon"},
		"--context " + ctx + "/x: not a directory":  {"executor", "--context", ctx + "/x", "--no-push"},
	} {
		if _, _, err := run(t, root, "", args...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: %v, want %q", args, err, want)
		}
	}
	// --no-push with a tar context builds.
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	df := []byte("FROM scratch\nCOPY f /f\n")
	tw.WriteHeader(&tar.Header{Name: "sub/Dockerfile", Mode: 0o644, Size: int64(len(df))})
	tw.Write(df)
	tw.WriteHeader(&tar.Header{Name: "sub/f", Mode: 0o644, Size: 1})
	tw.Write([]byte("x"))
	tw.Close()
	tarFile := filepath.Join(t.TempDir(), "ctx.tar")
	os.WriteFile(tarFile, b.Bytes(), 0o644)
	out, _, err := run(t, root, "", "executor", "--context", "tar://"+tarFile, "--context-sub-path", "sub", "--no-push")
	if err != nil || !idLine.MatchString(out) {
		t.Errorf("tar:// context: %q %v", out, err)
	}
}

func TestIsExecutorName(t *testing.T) {
	for argv0, want := range map[string]bool{"/kaniko/executor": true, "executor": true, "/usr/bin/kiln": false, "executors": false} {
		if got := isExecutorName(argv0); got != want {
			t.Errorf("isExecutorName(%q) = %v", argv0, got)
		}
	}
}

// layoutConfig is the config of the image in the OCI layout dir.
func layoutConfig(t *testing.T, dir string) *v1.ConfigFile {
	t.Helper()
	p, err := layout.FromPath(dir)
	testutil.Require(t, err)
	idx, err := p.ImageIndex()
	testutil.Require(t, err)
	im, err := idx.IndexManifest()
	testutil.Require(t, err)
	if len(im.Manifests) != 1 {
		t.Fatalf("layout %s: %d manifests", dir, len(im.Manifests))
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	testutil.Require(t, err)
	cf, err := img.ConfigFile()
	testutil.Require(t, err)
	return cf
}

// TestExecutorFlagTable: kaniko's executor flags that the kaniko job test
// does not use, each in kaniko's spelling: what it does, and the error
// for a value kiln cannot take.
func TestExecutorFlagTable(t *testing.T) {
	isolateAuth(t)
	reg := startRegistry(t)
	pushVersion(t, reg.host+"/library/base:1", "from-the-mirror")
	tlsReg := httptest.NewUnstartedServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	tlsReg.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes refused on purpose
	tlsReg.StartTLS()
	t.Cleanup(tlsReg.Close)
	tlsHost := strings.TrimPrefix(tlsReg.URL, "https://")
	pushVersion(t, reg.host+"/library/tlsbase:1", "over-tls")
	src, err := name.ParseReference(reg.host + "/library/tlsbase:1")
	testutil.Require(t, err)
	tlsBase, err := name.ParseReference(tlsHost + "/library/tlsbase:1")
	testutil.Require(t, err)
	img, err := remote.Image(src)
	testutil.Require(t, err)
	testutil.Require(t, remote.Write(tlsBase, img, remote.WithTransport(tlsReg.Client().Transport)))

	ctx := t.TempDir()
	files := map[string]string{
		"Dockerfile":        "FROM scratch AS one\nLABEL stage=one\nFROM scratch\nCOPY a.txt /a.txt\nLABEL stage=two\n",
		"Dockerfile.mirror": "FROM base:1\nLABEL stage=mirror\n",
		"Dockerfile.tls":    "FROM " + tlsHost + "/library/tlsbase:1\nLABEL stage=tls\n",
		"a.txt":             "a\n",
	}
	for n, c := range files {
		testutil.Require(t, os.WriteFile(filepath.Join(ctx, n), []byte(c), 0o644))
	}
	failManifestPuts := func(n int) {
		var left atomic.Int64
		left.Store(int64(n))
		reg.before = func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") && left.Add(-1) >= 0 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return true
			}
			return false
		}
	}
	for _, c := range []struct {
		name    string
		args    []string
		before  func()
		wantErr string
		check   func(t *testing.T, cf *v1.ConfigFile, stderr string)
	}{
		{name: "target", args: []string{"--target", "one"},
			check: func(t *testing.T, cf *v1.ConfigFile, _ string) {
				if cf.Config.Labels["stage"] != "one" {
					t.Errorf("--target one built stage %q", cf.Config.Labels["stage"])
				}
			}},
		{name: "target missing", args: []string{"--target", "three"}, wantErr: "three"},
		{name: "label", args: []string{"--label", "org.example.team=build", "--label", "b=2"},
			check: func(t *testing.T, cf *v1.ConfigFile, _ string) {
				if cf.Config.Labels["org.example.team"] != "build" || cf.Config.Labels["b"] != "2" || cf.Config.Labels["stage"] != "two" {
					t.Errorf("--label: labels %v", cf.Config.Labels)
				}
			}},
		{name: "reproducible", args: []string{"--reproducible"},
			check: func(t *testing.T, cf *v1.ConfigFile, _ string) {
				if cf.Created.Unix() != 0 {
					t.Errorf("--reproducible: created %v, want the epoch", cf.Created)
				}
			}},
		{name: "custom-platform", args: []string{"--custom-platform", "linux/arm/v7"},
			check: func(t *testing.T, cf *v1.ConfigFile, _ string) {
				if cf.OS != "linux" || cf.Architecture != "arm" || cf.Variant != "v7" {
					t.Errorf("--custom-platform: %s/%s/%s", cf.OS, cf.Architecture, cf.Variant)
				}
			}},
		{name: "custom-platform misspelt", args: []string{"--custom-platform", "linux/arm/v7/x"}, wantErr: "linux/arm/v7/x"},
		{name: "log-format json", args: []string{"--log-format", "json"},
			check: func(t *testing.T, _ *v1.ConfigFile, stderr string) {
				lines := strings.Split(strings.TrimSpace(stderr), "\n")
				for _, l := range lines {
					var v map[string]any
					if json.Unmarshal([]byte(l), &v) != nil {
						t.Errorf("--log-format json: a line that is not a JSON object: %q", l)
					}
				}
				if len(lines) < 2 {
					t.Errorf("--log-format json: %d lines", len(lines))
				}
			}},
		{name: "log-format misspelt", args: []string{"--log-format", "xml"}, wantErr: `--log-format "xml": want text, color or json`},
		{name: "registry-mirror", args: []string{"--dockerfile", "Dockerfile.mirror", "--registry-mirror", "http://" + reg.host},
			check: func(t *testing.T, cf *v1.ConfigFile, _ string) {
				if cf.Config.Labels["v"] != "from-the-mirror" {
					t.Errorf("--registry-mirror: base label %q", cf.Config.Labels["v"])
				}
			}},
		{name: "base over TLS without verification", args: []string{"--dockerfile", "Dockerfile.tls"}, wantErr: tlsHost},
		{name: "insecure-pull", args: []string{"--dockerfile", "Dockerfile.tls", "--insecure-pull"},
			check: func(t *testing.T, cf *v1.ConfigFile, _ string) {
				if cf.Config.Labels["v"] != "over-tls" {
					t.Errorf("--insecure-pull: base label %q", cf.Config.Labels["v"])
				}
			}},
		{name: "skip-tls-verify-pull", args: []string{"--dockerfile", "Dockerfile.tls", "--skip-tls-verify-pull"}},
		{name: "push over TLS without verification", args: []string{"--destination", tlsHost + "/team/app:1", "--push-retry", "0"}, wantErr: tlsHost},
		{name: "skip-tls-verify", args: []string{"--destination", tlsHost + "/team/app:2", "--skip-tls-verify"}},
		{name: "insecure", args: []string{"--destination", tlsHost + "/team/app:3", "--insecure"}},
		{name: "push-retry 0", args: []string{"--destination", reg.host + "/team/retry:0", "--push-retry", "0"},
			before: func() { failManifestPuts(1) }, wantErr: "503"},
		{name: "push-retry 2", args: []string{"--destination", reg.host + "/team/retry:2", "--push-retry", "2"},
			before: func() { failManifestPuts(2) }},
		{name: "cache-repo", args: []string{"--destination", reg.host + "/team/app:c", "--cache", "--cache-repo", reg.host + "/team/kcache"},
			check: func(t *testing.T, _ *v1.ConfigFile, _ string) {
				repo, err := name.NewRepository(reg.host + "/team/kcache")
				testutil.Require(t, err)
				if tags, err := remote.List(repo); err != nil || len(tags) == 0 {
					t.Errorf("--cache-repo: the step cache was not pushed there: %v %v", tags, err)
				}
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			defer func() { reg.before = nil }()
			if c.before != nil {
				c.before()
			}
			out := filepath.Join(t.TempDir(), "layout")
			args := append([]string{"executor", "--context", "dir://" + ctx, "--oci-layout-path", out}, c.args...)
			if !slices.Contains(c.args, "--destination") {
				args = append(args, "--no-push")
			}
			_, stderr, err := run(t, t.TempDir(), "", args...)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("%v: %v, want %q", c.args, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v: %v\n%s", c.args, err, stderr)
			}
			if c.check != nil {
				c.check(t, layoutConfig(t, out), stderr)
			}
		})
	}
}
