package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/store"
)

// TestCopyBaseIndexThroughRegistryCache: a COPY whose destination may be
// a directory of the base (COPY a.txt /bin) must look at the base's files.
// The first build fetches each base layer once to index it (and says so),
// and --cache-to pushes the index to docker-registry; a second build in the
// same store, and a build in a fresh store with --cache-from, fetch no base
// layer and copy into the base's directory all the same.
func TestCopyBaseIndexThroughRegistryCache(t *testing.T) {
	testutil.SkipIfShort(t)
	backend := testutil.StartRegistry(t)
	reg, counts := testutil.CountingProxy(t, backend)
	base := testutil.BusyboxImage(t)
	testutil.PushImage(t, reg+"/library/busybox:latest", base)
	baseBytes := func() int64 {
		layers, err := base.Layers()
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, l := range layers {
			d, _ := l.Digest()
			n += counts.BlobBytes(d.String())
		}
		return n
	}
	dir := t.TempDir()
	df := "FROM " + reg + "/library/busybox\nCOPY a.txt /bin\nCOPY a.txt /etc/\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	repo := reg + "/cache"
	rootA, rootB := t.TempDir(), t.TempDir()

	first := kiln(t, "--root", rootA, "build", "--cache-to", repo, "-t", "app:1", dir)
	if !strings.Contains(first.stderr, "for its path index: COPY needs to know what /bin is") {
		t.Errorf("the first build does not say why it fetched a base layer:\n%s", first)
	}
	n1 := baseBytes()
	if n1 == 0 {
		t.Fatal("the first build fetched no base layer: how did it know /bin is a directory?")
	}
	checkCopiedIntoBin(t, rootA)

	second := kiln(t, "--root", rootA, "build", "-t", "app:1", dir)
	if n := baseBytes() - n1; n != 0 || strings.Contains(second.stderr, "path index") {
		t.Errorf("a second build in the same store fetched %d base layer bytes:\n%s", n, second)
	}
	fresh := kiln(t, "--root", rootB, "build", "--cache-from", repo, "-t", "app:1", dir)
	if n := baseBytes() - n1; n != 0 || strings.Contains(fresh.stderr, "path index") {
		t.Errorf("a fresh store with --cache-from fetched %d base layer bytes:\n%s", n, fresh)
	}
	// Its layers are the first build's (the COPY layers come from the
	// step cache, left in the registry).
	if a, b := inspectLayersIn(t, rootA, "app:1"), inspectLayersIn(t, rootB, "app:1"); strings.Join(a, " ") != strings.Join(b, " ") {
		t.Errorf("layers differ: %v and %v", a, b)
	}
}

// checkCopiedIntoBin checks that app:1's COPY layer put a.txt into the
// base's /bin directory.
func checkCopiedIntoBin(t *testing.T, root string) {
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
		if !strings.HasSuffix(e.Ref, "/app:1") {
			continue
		}
		img, err := st.Image(e.Descriptor.Digest)
		if err != nil {
			t.Fatal(err)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		// The base's layers stay in the registry; the COPY layer is the
		// second to last.
		tree := testutil.LayerTree(t, layers[len(layers)-2])
		if testutil.TreeEntry(tree, "/bin/a.txt") == "" || strings.HasPrefix(testutil.TreeEntry(tree, "/bin"), "/bin file") {
			t.Errorf("a.txt did not go into the base's /bin:\n%s", strings.Join(tree, "\n"))
		}
		return
	}
	t.Fatalf("no app:1 in %s", root)
}
