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
}
