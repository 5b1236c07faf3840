package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/pkg/cache"
	"github.com/kiln-build/kiln/pkg/store"
)

// TestPrune: prune reports what it removed, and refuses filters it does
// not know with a clear error.
func TestPrune(t *testing.T) {
	root := t.TempDir()
	out, _, err := run(t, root, "", "prune")
	if err != nil || !strings.Contains(out, "Deleted 0 step-cache entries, 0 blobs and 0 unpacked layers") || !strings.Contains(out, "Total reclaimed space: 0B") ||
		!strings.Contains(out, "Deleted 0 context-file digests and the answers about 0 base images") {
		t.Errorf("prune of an empty store: %q, %v", out, err)
	}
	for _, f := range []string{"label=x", "until=soon"} {
		if _, _, err := run(t, root, "", "prune", "--filter", f); err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("--filter %s: %v", f, err)
		}
	}
	if _, _, err := run(t, root, "", "prune", "-f", "--filter", "until=24h"); err != nil {
		t.Errorf("prune -f --filter until=24h: %v", err)
	}
	// --isolation is honoured: parsed at the flag (a bad one names the
	// choices), and the mode asked for is the one that removes layers.
	if _, _, err := run(t, root, "", "--isolation", "bogus", "prune"); err == nil || !strings.Contains(err.Error(), "want auto") {
		t.Errorf("--isolation bogus prune: %v", err)
	}
	if out, _, err := run(t, root, "", "--isolation", "none", "prune"); err != nil || !strings.Contains(out, "0 unpacked layers") {
		t.Errorf("--isolation none prune: %q, %v", out, err)
	}
}

// TestPruneAll: plain prune keeps the context-file digests that can still
// be used and drops the answers about layers the store no longer has;
// prune --all (-a) removes the digests and every answer.
func TestPruneAll(t *testing.T) {
	root := t.TempDir()
	st, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	ctxFile := filepath.Join(t.TempDir(), "app.jar")
	if err := os.WriteFile(ctxFile, []byte("jar"), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(ctxFile)
	if err != nil {
		t.Fatal(err)
	}
	stat, ok := cache.StatOf(fi)
	if !ok {
		t.Skip("no stat key on this platform")
	}
	sums := cache.OpenFileSums(st)
	sums.Record(ctxFile, stat, "d", time.Now().Add(time.Second))
	if err := sums.Save(); err != nil {
		t.Fatal(err)
	}
	answers := filepath.Join(root, "path-answers", "x.json")
	if err := os.MkdirAll(filepath.Dir(answers), 0o755); err != nil {
		t.Fatal(err)
	}
	raw := `{"v":1,"diffIDs":["sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"],"answers":{"/app":null}}`
	if err := os.WriteFile(answers, []byte(raw), 0o644); err != nil {
		t.Fatal(err)
	}
	sumsFile := filepath.Join(root, "context-sums.json")
	out, _, err := run(t, root, "", "prune")
	if err != nil || !strings.Contains(out, "Deleted 0 context-file digests and the answers about 1 base images") {
		t.Fatalf("prune: %q, %v", out, err)
	}
	if _, err := os.Stat(answers); !os.IsNotExist(err) {
		t.Errorf("plain prune kept the answers about a layer the store does not have: %v", err)
	}
	if _, ok := cache.OpenFileSums(st).Lookup(ctxFile, stat); !ok {
		t.Error("plain prune dropped the digest of an unchanged context file")
	}
	out, _, err = run(t, root, "", "prune", "-a")
	if err != nil || !strings.Contains(out, "Deleted 1 context-file digests") {
		t.Fatalf("prune -a: %q, %v", out, err)
	}
	if _, err := os.Stat(sumsFile); !os.IsNotExist(err) {
		t.Errorf("prune -a left %s: %v", sumsFile, err)
	}
}
