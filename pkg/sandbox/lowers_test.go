package sandbox

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFileInLowers: the topmost layer that has a path says whether a
// bind from a stage mounts a file; a whiteout hides the lower file.
func TestFileInLowers(t *testing.T) {
	bottom, top := t.TempDir(), t.TempDir()
	for _, d := range []string{filepath.Join(bottom, "d"), filepath.Join(bottom, "x"), filepath.Join(top, "x")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{filepath.Join(bottom, "f"), filepath.Join(bottom, "d/g"), filepath.Join(bottom, "gone")} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lowers := []string{bottom, top}
	for p, want := range map[string]bool{"/f": true, "d/g": true, "/d": false, "/x": false, "/missing": false} {
		if got := fileInLowers(lowers, p); got != want {
			t.Errorf("fileInLowers(%q) = %v, want %v", p, got, want)
		}
	}
	if os.Geteuid() == 0 {
		if err := unix.Mknod(filepath.Join(top, "gone"), unix.S_IFCHR, 0); err != nil {
			t.Fatal(err)
		}
		if fileInLowers(lowers, "/gone") {
			t.Error("a whited-out file counts as a file")
		}
	}
}
