package imagearchive

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/kiln-build/kiln/internal/testutil"
)

// TestWriteLayoutConcurrentAndStaleTemps: writers to one layout take
// turns, so every ref each one adds is there at the end, and temporary
// files a killed writer left are removed.
func TestWriteLayoutConcurrentAndStaleTemps(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "out")
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	stale := []string{filepath.Join(blobs, ".kiln-tmp-blob-1"), filepath.Join(blobs, ".0123.tmp-42"), filepath.Join(dir, ".index.json.tmp-7")}
	for _, p := range stale {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const n = 4
	imgs := make([]v1.Image, n)
	for i := range imgs {
		imgs[i] = testutil.RandomImage(t, 1)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = WriteLayout(dir, []Item{{Ref: fmt.Sprintf("localhost/app:%d", i), Artifact: imgs[i]}})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	items, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != n {
		t.Fatalf("%d refs after %d writers: %+v", len(items), n, items)
	}
	for i, it := range items {
		if want := fmt.Sprintf("localhost/app:%d", i); it.Ref != want {
			t.Fatalf("item %d is %q, want %q", i, it.Ref, want)
		}
		testutil.SameImage(t, itemImage(t, it), imgs[i])
	}
	for _, p := range stale {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("stale temp %s still there (%v)", p, err)
		}
	}
	// A layout is for others to read, unlike kiln's private store.
	if fi, err := os.Stat(filepath.Join(dir, "index.json")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("index.json: %v, %v", fi, err)
	}
}
