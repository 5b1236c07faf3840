package build_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/pkg/build"
)

// unpackedLayers counts the layer directories in the store's rootfs.
func unpackedLayers(t *testing.T, root string) int {
	t.Helper()
	keys, _ := os.ReadDir(filepath.Join(root, "rootfs"))
	n := 0
	for _, k := range keys {
		ents, _ := os.ReadDir(filepath.Join(root, "rootfs", k.Name()))
		for _, e := range ents {
			if e.IsDir() && len(e.Name()) == 64 {
				n++
			}
		}
	}
	return n
}

// TestPruneUnpacked: unpacked layers of no stored image go once unused
// for the grace period; those of a stored image stay; a later build
// unpacks what it needs again.
func TestPruneUnpacked(t *testing.T) {
	e, sb := runEnv(t)
	if !sb.Overlay() {
		t.Skip("without overlay, steps run on working copies and keep no unpacked layers")
	}
	ctx := context.Background()
	df := "FROM {{REG}}/library/busybox\nRUN echo 1 > /a\n"
	e.mustBuild(t, df, nil, withSandbox(sb, nil))
	n := unpackedLayers(t, e.store.Root())
	if n < 2 {
		t.Fatalf("%d unpacked layers after a RUN build, want the base and the step's", n)
	}
	if got, err := build.PruneUnpacked(ctx, e.store, sb, time.Hour); err != nil || got != 0 {
		t.Errorf("prune with an hour's grace: %d, %v; want 0 (just used)", got, err)
	}
	if got, err := build.PruneUnpacked(ctx, e.store, sb, 0); err != nil || got != n {
		t.Errorf("prune of unreferenced layers: %d, %v; want %d", got, err, n)
	}
	if left := unpackedLayers(t, e.store.Root()); left != 0 {
		t.Errorf("%d layers left", left)
	}

	// Stored and tagged, the image keeps its layers.
	img := e.mustBuild(t, df, nil, withSandbox(sb, nil))
	d, err := e.store.WriteImage(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.Tag("localhost/pruned:1", d); err != nil {
		t.Fatal(err)
	}
	if got, err := build.PruneUnpacked(ctx, e.store, sb, 0); err != nil || got != 0 {
		t.Errorf("prune with the image stored: %d, %v; want 0", got, err)
	}
	if left := unpackedLayers(t, e.store.Root()); left != n {
		t.Errorf("%d layers left, want %d", left, n)
	}
	if tmp, _ := filepath.Glob(filepath.Join(e.store.Root(), "rootfs", "*", "tmp", "prune-*")); len(tmp) != 0 {
		t.Errorf("prune left %s", strings.Join(tmp, ", "))
	}
}
