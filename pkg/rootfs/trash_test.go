package rootfs_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestDiscardAndEmptyTrash: a working copy (with a file of another owner)
// leaves its place at once by Discard, and EmptyTrash removes it through
// the sandbox.
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
	if err := st.Discard(sb.Key(), copyDir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(copyDir); !os.IsNotExist(err) {
		t.Fatalf("%s still there after Discard (%v)", copyDir, err)
	}
	trash := filepath.Join(st.Root(), sb.Key(), "trash")
	ents, _ := os.ReadDir(trash)
	if len(ents) != 1 {
		t.Fatalf("trash holds %d entries, want the working copy", len(ents))
	}
	if _, err := os.Lstat(filepath.Join(trash, ents[0].Name(), "rootfs", "srv", "www")); err != nil {
		t.Fatalf("the discarded copy's files: %v", err)
	}
	n, err := st.EmptyTrash(ctx, sb)
	if err != nil || n != 1 {
		t.Fatalf("EmptyTrash = %d, %v; want 1", n, err)
	}
	if ents, _ := os.ReadDir(trash); len(ents) != 0 {
		t.Errorf("trash not empty: %d entries", len(ents))
	}
	if n, err := st.EmptyTrash(ctx, sb); n != 0 || err != nil {
		t.Errorf("EmptyTrash of an empty trash = %d, %v", n, err)
	}
}
