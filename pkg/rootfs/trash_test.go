package rootfs_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestDiscardAndEmptyTrash: a working copy (with a file of another owner)
// and a step's temporary directory leave their place at once by Discard,
// and EmptyTrash removes them through the sandbox.
func TestDiscardAndEmptyTrash(t *testing.T) {
	sb, st := sandboxStore(t)
	ctx := context.Background()
	copyDir := filepath.Join(st.Root(), sb.Key(), "copy-test")
	rootDir := filepath.Join(copyDir, "rootfs")
	if err := os.MkdirAll(rootDir, 0o755); err != nil {
		t.Fatal(err)
	}
	l := layer(t, dir("srv/"), tent{name: "srv/www", typ: '0', mode: 0o644, uid: 33, body: "w"})
	rc, err := l.Open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Apply(ctx, rootDir, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()

	if err := st.Discard(sb.Key(), filepath.Join(t.TempDir(), "elsewhere")); err == nil {
		t.Error("Discard of a directory outside the mapping's directory: no error")
	}
	if err := st.Discard(sb.Key(), filepath.Join(rootDir, "srv")); err == nil {
		t.Error("Discard of a directory inside a working copy: no error")
	}
	if err := st.Discard(sb.Key(), copyDir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(copyDir); !os.IsNotExist(err) {
		t.Fatalf("%s still there after Discard (%v)", copyDir, err)
	}
	// A step's temporary directory (overlay's work directory is mode
	// 000 and root's in the namespace) goes the same way.
	step, err := st.TempDir(sb.Key(), "run-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(step, "work", "work"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(step, "work", "work"), 0); err != nil {
		t.Fatal(err)
	}
	if err := st.Discard(sb.Key(), step); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(step); !os.IsNotExist(err) {
		t.Fatalf("%s still there after Discard (%v)", step, err)
	}
	trash := filepath.Join(st.Root(), sb.Key(), "trash")
	ents, _ := os.ReadDir(trash)
	if len(ents) != 2 {
		t.Fatalf("trash holds %d entries, want the working copy and the step's directory", len(ents))
	}
	found := 0
	for _, e := range ents {
		if _, err := os.Lstat(filepath.Join(trash, e.Name(), "rootfs", "srv", "www")); err == nil {
			found++
		}
	}
	if found != 1 {
		t.Fatalf("the discarded copy's files are in %d of the trash's entries", found)
	}
	n, err := st.EmptyTrash(ctx, sb)
	if err != nil || n != 2 {
		t.Fatalf("EmptyTrash = %d, %v; want 2", n, err)
	}
	if ents, _ := os.ReadDir(trash); len(ents) != 0 {
		t.Errorf("trash not empty: %d entries", len(ents))
	}
	if n, err := st.EmptyTrash(ctx, sb); n != 0 || err != nil {
		t.Errorf("EmptyTrash of an empty trash = %d, %v", n, err)
	}
}
