package security

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/pkg/sandbox"
)

// TestSandboxCacheIDCannotNameTheStore (finding 1): a cache mount's id is
// any string, and whatever it is ("..", "/", "", "a/../..", an absolute
// path, ".") the step gets a cache directory of its own: never the store's
// unpacked layers or another id's cache. Each id's directory starts empty,
// and what the step writes there lands in that cache only.
func TestSandboxCacheIDCannotNameTheStore(t *testing.T) {
	t.Parallel()
	ids := []string{"..", "/", "a/../..", "../../..", "/etc", ".", "", "ok"}
	var df strings.Builder
	df.WriteString("FROM {{BASE}}\n")
	for i, id := range ids {
		opt := "id=" + id + ","
		if id == "" {
			opt = ""
		}
		df.WriteString("RUN --mount=type=cache," + opt + "target=/c" + itoa(i) + " ls -a /c" + itoa(i) + " | tr '\\n' ' ' > /l" + itoa(i) + " && echo pwn > /c" + itoa(i) + "/POISON\n")
	}
	eachSandboxMode(t, func(t *testing.T, _ *sandbox.Sandbox, flags []string) {
		r := buildDockerfile(t, flags, "cacheid:1", df.String())
		if r.err != nil {
			t.Fatalf("%v\n%s", r.err, r)
		}
		for i, id := range ids {
			if l := imageFile(t, storeRoot(flags), lastLine(r.stdout), "l"+itoa(i)); strings.TrimSpace(l) != ". .." {
				t.Errorf("cache id %q: the step's cache directory was not new and empty: %q", id, l)
			}
		}
		// Every file the steps wrote is in a cache directory of its own.
		poisons := findNamed(filepath.Join(storeRoot(flags), "rootfs"), "POISON")
		if len(poisons) != len(ids) {
			t.Errorf("%d POISON files in the store, want %d (one per cache): %v", len(poisons), len(ids), poisons)
		}
		for _, p := range poisons {
			if filepath.Base(filepath.Dir(filepath.Dir(p))) != "cache" {
				t.Errorf("a step wrote outside its cache directory: %s", p)
			}
		}
	})
}

func itoa(i int) string { return string(rune('0' + i)) }
