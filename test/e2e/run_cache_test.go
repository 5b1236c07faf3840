package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/store"
)

// TestRunStepCacheRegistry: a build pushes its step cache to a repository
// of Debian's docker-registry (--cache-to); a build in a fresh store (a new
// pod, a fresh checkout with new mtimes) takes its COPY and RUN steps from
// there (--cache-from) without running them and without downloading their
// layers, and pushing its image to that registry mounts them from the
// cache repository. A changed step runs, and the one after it.
func TestRunStepCacheRegistry(t *testing.T) {
	testutil.SkipIfShort(t)
	requireRun(t)
	reg := testutil.StartRegistry(t)
	testutil.PushImage(t, reg+"/library/busybox:latest", testutil.BusyboxImage(t))
	dir := t.TempDir()
	df := "FROM " + reg + "/library/busybox\nCOPY in.txt /in.txt\nRUN cat /proc/uptime /proc/self/stat > /stamp\nRUN cp /stamp /stamp2\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "in.txt"), []byte("input\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	repo := reg + "/cache/app"

	first := kiln(t, "--root", runStore(t), "build", "--cache-to", repo, "-t", "app:1", dir)
	// Three steps, plus the base layers' path indexes.
	if m := regexp.MustCompile(`Exported (\d+) step-cache entries to ` + regexp.QuoteMeta(repo)).FindStringSubmatch(first.stderr); m == nil || len(m[1]) == 1 && m[1] < "3" || strings.Contains(first.stderr, "CACHED") {
		t.Fatalf("first build:\n%s", first)
	}
	firstLayers := inspectLayers(t, first)

	// A new pod: an empty store, and a fresh checkout (new mtimes).
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "in.txt"), later, later); err != nil {
		t.Fatal(err)
	}
	rootB := runStore(t)
	second := kiln(t, "--root", rootB, "build", "--cache-from", repo, "-t", "app:1", dir)
	if n := strings.Count(second.stderr, "CACHED"); n != 3 || !strings.Contains(second.stderr, "from "+repo) || strings.Contains(second.stderr, "RUN done") {
		t.Fatalf("second build took %d steps from the cache, want 3 (COPY and 2 RUN):\n%s", n, second)
	}
	secondLayers := inspectLayersIn(t, rootB, "app:1")
	for i := len(secondLayers) - 3; i < len(secondLayers); i++ {
		if secondLayers[i] != firstLayers[i] {
			t.Errorf("RUN layer %d: %s, first build %s", i, secondLayers[i], firstLayers[i])
		}
		hex := strings.TrimPrefix(secondLayers[i], "sha256:")
		if _, err := os.Stat(filepath.Join(rootB, "blobs", "sha256", hex)); err == nil {
			t.Errorf("the cached RUN layer %s was downloaded", secondLayers[i])
		}
	}
	push := kiln(t, "--root", rootB, "push", "app:1", reg+"/app/final:1")
	if strings.Count(push.stderr, "Mounted from cache/app") != 3 {
		t.Errorf("push did not mount the COPY and both RUN layers from the cache repository:\n%s", push)
	}

	// A changed step runs; the one after it then runs too.
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(strings.Replace(df, "> /stamp\n", "> /stamp; echo changed\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	third := kiln(t, "--root", rootB, "build", "--cache-from", repo, "-t", "app:2", dir)
	if strings.Count(third.stderr, "CACHED") != 1 || strings.Count(third.stderr, "RUN done") != 2 {
		t.Errorf("changed step:\n%s", third)
	}

	// --cache-ttl (buildah's, kaniko's): results younger than the TTL are
	// taken, older ones run again.
	fresh := kiln(t, "--root", rootB, "build", "--cache-ttl", "1h", "--cache-from", repo, "-t", "app:2", dir)
	if strings.Count(fresh.stderr, "RUN done") != 0 {
		t.Errorf("--cache-ttl 1h ran a step cached moments ago:\n%s", fresh)
	}
	aged := kiln(t, "--root", rootB, "build", "--cache-ttl", "1ms", "--cache-from", repo, "-t", "app:2", dir)
	if strings.Count(aged.stderr, "RUN done") != 2 {
		t.Errorf("--cache-ttl 1ms took a RUN step from the cache:\n%s", aged)
	}

	// A tag is not a cache repository.
	bad := kilnRun(t, nil, "--root", rootB, "build", "--cache-to", repo+":v1", dir)
	if bad.err == nil || !strings.Contains(bad.stderr, "--cache-to "+repo+":v1") {
		t.Errorf("--cache-to with a tag:\n%s", bad)
	}
}

// inspectLayers returns the layer (blob) digests of the image a build
// tagged app:1 in its store.
func inspectLayers(t *testing.T, r run) []string {
	t.Helper()
	for i, a := range r.args {
		if a == "--root" {
			return inspectLayersIn(t, r.args[i+1], "app:1")
		}
	}
	t.Fatal("no --root")
	return nil
}

func inspectLayersIn(t *testing.T, root, ref string) []string {
	t.Helper()
	st, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	es, err := st.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if strings.HasSuffix(e.Ref, "/"+ref) {
			img, err := st.Image(e.Descriptor.Digest)
			if err != nil {
				t.Fatal(err)
			}
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, l := range m.Layers {
				out = append(out, l.Digest.String())
			}
			return out
		}
	}
	t.Fatalf("no %s in %s", ref, root)
	return nil
}

// TestRunSecret: `kiln build --secret` shows a file and an environment
// variable to RUN --mount=type=secret steps (as root and as users without
// privileges), and the secret is in no output: not the image, not the log.
func TestRunSecret(t *testing.T) {
	testutil.SkipIfShort(t)
	requireRun(t)
	reg := testutil.StartRegistry(t)
	testutil.PushImage(t, reg+"/library/busybox:latest", testutil.BusyboxImage(t))
	dir := t.TempDir()
	const value = "ci-token-Zq81"
	secret := filepath.Join(dir, "token.txt")
	if err := os.WriteFile(secret, []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256Hex(value)
	df := "FROM " + reg + "/library/busybox\n" +
		"RUN --mount=type=secret,id=token test \"$(sha256sum /run/secrets/token | cut -c1-64)\" = " + sum + " && echo ok > /ok\n" +
		"RUN --mount=type=secret,id=token,env=TOKEN test \"$(printf %s \"$TOKEN\" | sha256sum | cut -c1-64)\" = " + sum + " && echo ok > /ok2\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "img.tar")
	r := kiln(t, "--root", runStore(t), "build", "--secret", "id=token,src="+secret, "-o", "type=docker,dest="+out, "-t", "sec:1", dir)
	if strings.Contains(r.stdout+r.stderr, value) {
		t.Errorf("the log shows the secret:\n%s", r)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(value)) {
		t.Error("the image archive holds the secret")
	}
	missing := kilnRun(t, nil, "--root", runStore(t), "build", "--secret", "id=token,src="+filepath.Join(dir, "absent"), dir)
	if missing.err == nil || !strings.Contains(missing.stderr, "--secret id=token") {
		t.Errorf("missing secret file:\n%s", missing)
	}
}
