package oracle

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/kiln-build/kiln/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// minCases is the least number of cases the suite must have.
const minCases = 120

// httpTime is the Last-Modified of every file the HTTP server serves.
var httpTime = time.Date(2023, 1, 2, 3, 4, 5, 0, time.UTC)

// env is what every case shares: the docker daemon, kiln and its store,
// the registry with the bases, the HTTP server.
type env struct {
	docker  *testutil.Docker
	kiln    string
	store   string
	vars    map[string]string
	httpURL string
	cutoff  time.Time
}

func loadCases(t *testing.T) []*testCase {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []*testCase
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		c, err := parseCase(strings.TrimSuffix(filepath.Base(p), ".txtar"), b)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		cases = append(cases, c)
	}
	return cases
}

// TestCases checks the case files and the known-failures table without
// building anything.
func TestCases(t *testing.T) {
	cases := loadCases(t)
	if len(cases) < minCases {
		t.Errorf("%d cases, want at least %d", len(cases), minCases)
	}
	names := map[string]bool{}
	for _, c := range cases {
		names[c.name] = true
	}
	for name, k := range known {
		if !names[name] {
			t.Errorf("known[%q] names no case in testdata", name)
		}
		if k.reason == "" || k.lane == "" {
			t.Errorf("known[%q] needs a reason and a lane", name)
		}
	}
}

// TestOracle builds every case with docker (BuildKit) and with kiln and
// compares the flattened trees and the configs.
func TestOracle(t *testing.T) {
	testutil.SkipIfShort(t)
	cases := loadCases(t)
	e := &env{cutoff: time.Now().Add(-time.Minute)}
	e.docker = testutil.SharedDocker(t)
	e.kiln = testutil.KilnBinary(t)
	e.store = t.TempDir()
	reg := testutil.StartRegistry(t)
	e.vars = pushBases(t, reg)
	e.vars["REGISTRY"] = reg

	served := map[string]string{}
	for _, c := range cases {
		for n, body := range c.http {
			served["/"+c.name+"/"+n] = body
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := served[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, filepath.Base(r.URL.Path), httpTime, strings.NewReader(body))
	}))
	t.Cleanup(srv.Close)
	e.httpURL = srv.URL

	var mu sync.Mutex
	ran, identical, knownFail := 0, 0, 0
	t.Run("case", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				ok, wasKnown := e.run(t, c)
				mu.Lock()
				defer mu.Unlock()
				ran++
				if ok {
					identical++
				} else if wasKnown {
					knownFail++
				}
			})
		}
	})
	t.Logf("%d cases ran of %d: %d identical, %d known failures, %d other", ran, len(cases), identical, knownFail,
		ran-identical-knownFail)
}

// run builds one case with both builders and compares. It returns
// whether the images agree, and whether the case is in the known table.
func (e *env) run(t *testing.T, c *testCase) (same, isKnown bool) {
	vars := map[string]string{"URL": e.httpURL + "/" + c.name}
	for k, v := range e.vars {
		vars[k] = v
	}
	dir := t.TempDir()
	ctxDir := filepath.Join(dir, "context")
	if err := c.writeContext(ctxDir, vars); err != nil {
		t.Fatalf("context: %v", err)
	}
	dockerArgs := append([]string{"-t", "oracle-" + c.name + ":1"}, c.args...)
	if c.oracle != "" {
		df := filepath.Join(dir, "oracle", "Dockerfile")
		if err := writeFile(df, []byte(expand(c.oracle, vars)), 0o644); err != nil {
			t.Fatal(err)
		}
		dockerArgs = append(dockerArgs, "-f", df)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	var dockerImg, kilnImg v1.Image
	var dockerErr, kilnErr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		dockerImg, dockerErr = e.dockerBuild(ctx, ctxDir, dockerArgs)
	}()
	go func() {
		defer wg.Done()
		kilnImg, kilnErr = e.kilnBuild(ctx, dir, ctxDir, c.args)
	}()
	wg.Wait()

	var diff []string
	switch {
	case c.fail != "":
		if dockerErr == nil {
			t.Fatalf("broken case: docker built it, but the case says both fail (%s)", c.fail)
		}
		if kilnErr == nil {
			diff = []string{"docker failed but kiln built it; docker said:\n" + lastLines(dockerErr.Error(), 8)}
		}
	case dockerErr != nil:
		if kilnErr != nil {
			t.Fatalf("broken case: both builders failed.\ndocker: %v\nkiln: %v", dockerErr, kilnErr)
		}
		diff = []string{"docker failed but kiln built it: " + lastLines(dockerErr.Error(), 12)}
	case kilnErr != nil:
		diff = []string{"kiln failed: " + lastLines(kilnErr.Error(), 12)}
	default:
		var err error
		diff, err = compare(dockerImg, kilnImg, e.cutoff, c)
		if err != nil {
			t.Fatal(err)
		}
	}
	k, isKnown := known[c.name]
	if isKnown && len(diff) > 0 && !k.covers(diff) {
		t.Errorf("%s\nkiln's image differs from docker's (BuildKit) beyond the known failure (%s: %s):\n%s",
			c.summary, k.lane, k.reason, strings.Join(diff, "\n"))
		return false, false
	}
	switch {
	case len(diff) == 0 && isKnown:
		t.Logf("now passes: remove from known list (%s: %s)", k.lane, k.reason)
	case len(diff) == 0:
	case isKnown:
		t.Logf("known failure (%s: %s):\n%s", k.lane, k.reason, strings.Join(diff, "\n"))
	default:
		t.Errorf("%s\nkiln's image differs from docker's (BuildKit):\n%s", c.summary, strings.Join(diff, "\n"))
	}
	return len(diff) == 0, isKnown
}

func (e *env) dockerBuild(ctx context.Context, ctxDir string, args []string) (v1.Image, error) {
	if _, err := e.docker.TryBuild(ctx, ctxDir, args...); err != nil {
		return nil, err
	}
	tag := args[1]
	out := filepath.Join(filepath.Dir(ctxDir), "docker.tar")
	if _, err := e.docker.TryDocker(ctx, "", "save", "-o", out, tag); err != nil {
		return nil, fmt.Errorf("docker save: %w", err)
	}
	return tarball.ImageFromPath(out, nil)
}

func (e *env) kilnBuild(ctx context.Context, dir, ctxDir string, args []string) (v1.Image, error) {
	out := filepath.Join(dir, "kiln-oci")
	full := append([]string{"--root", e.store, "--progress", "plain", "build", "-o", "type=oci,dest=" + out}, args...)
	cmd := exec.CommandContext(ctx, e.kiln, append(full, ctxDir)...)
	var stderr bytes.Buffer
	cmd.Stderr, cmd.Stdout = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("kiln build: %v\n%s", err, stderr.String())
	}
	p, err := layout.FromPath(out)
	if err != nil {
		return nil, err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) != 1 {
		return nil, fmt.Errorf("kiln's OCI layout has %d manifests, want 1", len(m.Manifests))
	}
	return idx.Image(m.Manifests[0].Digest)
}

// compare returns the differences between docker's and kiln's images.
func compare(dockerImg, kilnImg v1.Image, cutoff time.Time, c *testCase) ([]string, error) {
	dt, err := flatten(dockerImg)
	if err != nil {
		return nil, fmt.Errorf("docker's image: %w", err)
	}
	kt, err := flatten(kilnImg)
	if err != nil {
		return []string{"kiln's image cannot be read: " + err.Error()}, nil
	}
	var out []string
	if d := diffTrees(dt, kt, cutoff, c.ignoreTime == "", c.stubs); len(d) > 0 {
		out = append(out, "tree:")
		out = append(out, d...)
	}
	dc, err := dockerImg.ConfigFile()
	if err != nil {
		return nil, err
	}
	kc, err := kilnImg.ConfigFile()
	if err != nil {
		return []string{"kiln's config cannot be read: " + err.Error()}, nil
	}
	if d := diffConfigs(dc, kc, c.ignoreHistory == ""); len(d) > 0 {
		out = append(out, "config:")
		out = append(out, d...)
	}
	return out, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// covers reports whether every difference in diff is one the entry
// expects: any, without only; else each must mention one of only. A
// difference is a line indented by two spaces with the more indented
// lines under it; the "tree:" and "config:" headings are not.
func (k knownFailure) covers(diff []string) bool {
	if len(k.only) == 0 {
		return true
	}
	var items []string
	for _, l := range strings.Split(strings.Join(diff, "\n"), "\n") {
		switch {
		case l == "tree:" || l == "config:":
		case strings.HasPrefix(l, "    ") && len(items) > 0:
			items[len(items)-1] += "\n" + l
		default:
			items = append(items, l)
		}
	}
	for _, it := range items {
		ok := false
		for _, o := range k.only {
			ok = ok || strings.Contains(it, o)
		}
		if !ok {
			return false
		}
	}
	return true
}
