package security

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStorePermissions (finding 11): the store is private to its user,
// as docker's data root is: its root directory is 0700 and the files and
// directories kiln writes in it (blobs, index.json, the lock, cache refs,
// sources, tmp) have no group or other permission bits. A store made
// before (a 0755 root, 0644 blobs) keeps working, and its root is closed
// by the next kiln command.
func TestStorePermissions(t *testing.T) {
	t.Parallel()
	root := filepath.Join(t.TempDir(), "store")
	df := "FROM {{BASE}}\nRUN --mount=type=cache,target=/c echo hi > /c/x && echo hi > /hi\n"
	if r := buildDockerfile(t, []string{"--root", root}, "perm:1", df); r.err != nil {
		t.Fatalf("%v\n%s", r.err, r)
	}
	checkPrivateStore(t, root)

	// An older store: world-readable root and blobs.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	_ = filepath.WalkDir(filepath.Join(root, "blobs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			mode := os.FileMode(0o644)
			if d.IsDir() {
				mode = 0o755
			}
			_ = os.Chmod(p, mode)
		}
		return nil
	})
	if r := kilnRun(t, nil, nil, "--root", root, "images"); r.err != nil || !strings.Contains(r.stdout, "perm") {
		t.Fatalf("an older store: %v\n%s", r.err, r)
	}
	if fi, err := os.Stat(root); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("an older store's root after a kiln command: %v %v, want 0700", fi.Mode().Perm(), err)
	}
	if r := buildDockerfile(t, []string{"--root", root}, "perm:2", df+"RUN echo again > /again\n"); r.err != nil {
		t.Fatalf("building on an older store: %v\n%s", r.err, r)
	}
}

// checkPrivateStore fails on a store root that is not 0700 and on any
// group or other permission bit on what package store writes in it.
func checkPrivateStore(t *testing.T, root string) {
	t.Helper()
	fi, err := os.Stat(root)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("store root %s is %v, want 0700", root, fi.Mode().Perm())
	}
	n := 0
	for _, top := range []string{"blobs", "index.json", "oci-layout", "lock", "tmp", "cache", "sources"} {
		_ = filepath.WalkDir(filepath.Join(root, top), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			n++
			if info.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s is %v: readable by others", p, info.Mode().Perm())
			}
			return nil
		})
	}
	if n < 8 {
		t.Errorf("only %d store paths checked: the layout changed?", n)
	}
}
