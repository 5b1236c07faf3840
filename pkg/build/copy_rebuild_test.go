package build_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/pkg/build"
	"github.com/kiln-build/kiln/pkg/cache"
	"github.com/kiln-build/kiln/pkg/store"
)

// TestCopyNoChangeRebuild: a rebuild in the same store takes every COPY
// and WORKDIR layer from the store's cache when nothing changed (the
// context is only stat'ed), and each change of what a COPY adds (content,
// content of the same size with the mtime put back, mode, a file added or
// removed under a copied directory, .dockerignore, --chown) writes that
// layer again and no other; a change that leaves the layer as it was (the
// context file's owner, a new inode with the same content) reads the file
// again. After every change the image is the one a fresh store builds
// (but for WORKDIR's layer, dated with each store's first build).
func TestCopyNoChangeRebuild(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a/x", "x1")
	write("a/y", "y1")
	write("b.txt", "b")
	write("c.txt", "c")
	df := "FROM {{REG}}/library/busybox\nWORKDIR /app\nCOPY a/ ./a/\nCOPY b.txt ./\nCOPY --chown=1:1 c.txt ./\n"
	steps := map[string]string{"WORKDIR": "WORKDIR /app", "a": "COPY a/ ./a/", "b": "COPY b.txt ./", "c": "c.txt ./"}
	opts := func(st *store.Store, log *bytes.Buffer) func(*build.Options) {
		return func(o *build.Options) {
			o.ContextDir, o.Store, o.Log, o.Timestamp = dir, st, log, nil
			o.Cache = cache.NewLocal(st)
			o.Dockerfile = []byte(strings.ReplaceAll(df, "{{REG}}", e.reg))
		}
	}
	warm := e.store
	rebuild := func(t *testing.T, rewritten ...string) {
		t.Helper()
		// A change is older than the kernel's timestamp granularity when
		// the build reads it (cache.FileSums keeps only such digests).
		time.Sleep(100 * time.Millisecond)
		var log bytes.Buffer
		got := e.mustBuild(t, df, nil, opts(warm, &log))
		for name, step := range steps {
			want := true
			for _, r := range rewritten {
				want = want && r != name
			}
			if cached := strings.Contains(log.String(), "CACHED") && hasCachedLine(log.String(), step); cached != want {
				t.Errorf("%s: taken from the cache %v, want %v:\n%s", step, cached, want, log.String())
			}
		}
		fresh, err := store.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		var flog bytes.Buffer
		want := e.mustBuild(t, df, nil, opts(fresh, &flog))
		// A fresh store's WORKDIR layer carries that build's time (as
		// BuildKit's does): every other layer must be the same.
		if a, b := dropLayer(layerDiffIDs(t, got), 1), dropLayer(layerDiffIDs(t, want), 1); a != b {
			t.Errorf("the rebuild's layers are not a fresh store's:\n%s\n%s", a, b)
		}
	}
	time.Sleep(100 * time.Millisecond)
	var log bytes.Buffer
	e.mustBuild(t, df, nil, opts(warm, &log))

	t.Run("nothing changed", func(t *testing.T) { rebuild(t) })
	t.Run("nothing changed again", func(t *testing.T) { rebuild(t) })
	t.Run("content", func(t *testing.T) {
		write("a/x", "x22")
		rebuild(t, "a")
	})
	t.Run("same size, mtime put back", func(t *testing.T) {
		p := filepath.Join(dir, "a/x")
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		write("a/x", "x33")
		if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
		rebuild(t, "a")
	})
	t.Run("mode", func(t *testing.T) {
		if err := os.Chmod(filepath.Join(dir, "a/y"), 0o755); err != nil {
			t.Fatal(err)
		}
		rebuild(t, "a")
	})
	t.Run("file added", func(t *testing.T) {
		write("a/sub/z", "z")
		rebuild(t, "a")
	})
	t.Run("file removed", func(t *testing.T) {
		if err := os.Remove(filepath.Join(dir, "a/sub/z")); err != nil {
			t.Fatal(err)
		}
		rebuild(t, "a")
	})
	t.Run(".dockerignore", func(t *testing.T) {
		write(".dockerignore", "a/y\n")
		rebuild(t, "a")
	})
	t.Run("--chown", func(t *testing.T) {
		df = strings.Replace(df, "--chown=1:1", "--chown=2:2", 1)
		rebuild(t, "c")
	})
	t.Run("new inode, same content and mtime", func(t *testing.T) {
		p := filepath.Join(dir, "b.txt")
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p+".new", []byte("b"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p+".new", fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p+".new", p); err != nil {
			t.Fatal(err)
		}
		rebuild(t, "b")
	})
	t.Run("owner of a context file", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("chown needs root")
		}
		if err := os.Chown(filepath.Join(dir, "b.txt"), 1234, 1234); err != nil {
			t.Fatal(err)
		}
		rebuild(t, "b")
	})
	t.Run("nothing changed at the end", func(t *testing.T) { rebuild(t) })
}

// hasCachedLine reports whether log has a CACHED line for step.
func hasCachedLine(log, step string) bool {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "CACHED") && strings.Contains(l, step) {
			return true
		}
	}
	return false
}

// dropLayer removes the i-th of layerDiffIDs' space-separated IDs.
func dropLayer(ids string, i int) string {
	f := strings.Fields(ids)
	if i < len(f) {
		f = append(f[:i], f[i+1:]...)
	}
	return strings.Join(f, " ")
}
