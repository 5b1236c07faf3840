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
	// The table is written without fsync: a crash may leave it cut short
	// or full of NUL bytes. It then holds nothing (files are read again),
	// and the next Save is whole.
	table := filepath.Join(st.Root(), "context-sums.json")
	raw, err := os.ReadFile(table)
	if err != nil {
		t.Fatal(err)
	}
	for _, torn := range [][]byte{raw[:len(raw)/2], make([]byte, len(raw))} {
		if err := os.WriteFile(table, torn, 0o600); err != nil {
			t.Fatal(err)
		}
		s := cache.OpenFileSums(st)
		if d, ok := s.Lookup(p, stat); ok {
			t.Errorf("torn table (%d bytes) gave %q", len(torn), d)
		}
		s.Record(p, stat, "d3", time.Now().Add(time.Second))
		if err := s.Save(); err != nil {
			t.Fatal(err)
		}
		if d, ok := cache.OpenFileSums(st).Lookup(p, stat); !ok || d != "d3" {
			t.Errorf("saved after a tear: %q %v", d, ok)
		}
	}
}

// TestPruneFileSums: plain prune drops the digests of files that are gone
// or changed and keeps the others; --all (all) removes the table, unless a
// build wrote it after the --filter until= time.
func TestPruneFileSums(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	stats := map[string]cache.FileStat{}
	sums := cache.OpenFileSums(st)
	for _, name := range []string{"kept", "gone", "changed"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		s, ok := cache.StatOf(fi)
		if !ok {
			t.Skip("no stat key on this platform")
		}
		stats[name] = s
		sums.Record(p, s, "d-"+name, time.Now().Add(time.Second))
	}
	if err := sums.Save(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "gone")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "changed"), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := cache.PruneFileSums(st, false, time.Time{})
	if err != nil || n != 2 {
		t.Fatalf("plain prune dropped %d, %v; want 2", n, err)
	}
	again := cache.OpenFileSums(st)
	if d, ok := again.Lookup(filepath.Join(dir, "kept"), stats["kept"]); !ok || d != "d-kept" {
		t.Errorf("the digest of an unchanged file was dropped: %q %v", d, ok)
	}
	if _, ok := again.Lookup(filepath.Join(dir, "changed"), stats["changed"]); ok {
		t.Error("the digest of a changed file was kept")
	}
	if n, err := cache.PruneFileSums(st, false, time.Time{}); err != nil || n != 0 {
		t.Errorf("second plain prune dropped %d, %v", n, err)
	}
	table := filepath.Join(st.Root(), "context-sums.json")
	if n, err := cache.PruneFileSums(st, true, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Errorf("--all with until=1h of a table written now removed %d, %v", n, err)
	}
	if _, err := os.Stat(table); err != nil {
		t.Fatalf("the table written now is gone: %v", err)
	}
	if n, err := cache.PruneFileSums(st, true, time.Time{}); err != nil || n != 1 {
		t.Errorf("--all removed %d digests, %v; want 1", n, err)
	}
	if _, err := os.Stat(table); !os.IsNotExist(err) {
		t.Errorf("--all left %s: %v", table, err)
	}
	if n, err := cache.PruneFileSums(st, true, time.Time{}); err != nil || n != 0 {
		t.Errorf("--all of a store without a table: %d, %v", n, err)
	}
}
