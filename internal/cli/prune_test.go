package cli

import (
	"strings"
	"testing"
)

// TestPrune: prune reports what it removed, and refuses filters it does
// not know with a clear error.
func TestPrune(t *testing.T) {
	root := t.TempDir()
	out, _, err := run(t, root, "", "prune")
	if err != nil || !strings.Contains(out, "Deleted 0 step-cache entries, 0 blobs and 0 unpacked layers") || !strings.Contains(out, "Total reclaimed space: 0B") {
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
