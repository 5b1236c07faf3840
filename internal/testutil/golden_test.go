package testutil

import (
	"testing"

	"github.com/kiln-build/kiln/internal/testutil/harness"
)

// TestGoldenPlatformImage shows the intended use of the golden helpers on a
// fully synthetic (so machine-independent) image: its file tree and config
// summary are kept in testdata/golden and reviewed like code.
func TestGoldenPlatformImage(t *testing.T) {
	img, err := harness.PlatformImage(harness.Platforms[1])
	if err != nil {
		t.Fatal(err)
	}
	Golden(t, "platform-arm64.tree", ImageTree(t, img))
	GoldenString(t, "platform-arm64.config", ConfigSummary(t, img))
}
