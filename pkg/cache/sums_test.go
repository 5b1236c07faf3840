package cache_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kiln-build/kiln/pkg/cache"
	"github.com/kiln-build/kiln/pkg/store"
)

// TestFileSums: a digest is found again only for the same path and stat,
// survives Save and a new table when the file's last change was before
// the read (by more than the kernel's timestamp granularity), and is kept
// only for the build that read it when the change was too recent.
func TestFileSums(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	stat, ok := cache.StatOf(fi)
	if !ok {
		t.Skip("no stat key on this platform")
	}
	sums := cache.OpenFileSums(st)
	// Read right after the write: racy.
	sums.Record(p, stat, "d1", time.Now())
	if d, ok := sums.Lookup(p, stat); !ok || d != "d1" {
		t.Fatalf("lookup after record: %q %v", d, ok)
	}
	if err := sums.Save(); err != nil {
		t.Fatal(err)
	}
	if _, ok := cache.OpenFileSums(st).Lookup(p, stat); ok {
		t.Error("a digest read right after the file changed was saved")
	}
	// Read well after the change.
	sums.Record(p, stat, "d2", time.Now().Add(time.Second))
	if err := sums.Save(); err != nil {
		t.Fatal(err)
	}
	again := cache.OpenFileSums(st)
	if d, ok := again.Lookup(p, stat); !ok || d != "d2" {
		t.Errorf("saved digest: %q %v", d, ok)
	}
	other := stat
	other.CTime++
	if _, ok := again.Lookup(p, other); ok {
		t.Error("a digest was found for another ctime")
	}
	other = stat
	other.Ino++
	if _, ok := again.Lookup(p, other); ok {
		t.Error("a digest was found for another inode")
	}
	if _, ok := again.Lookup(p+"x", stat); ok {
		t.Error("a digest was found for another path")
	}
}
