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
)

// TestCopyCache: with CacheCopies (a registry-shared step cache), a COPY
// of the same files with new mtimes (a fresh checkout) reuses the cached
// layer, old mtimes included, as BuildKit does; changed content writes a
// new layer; without CacheCopies the layer keeps the new mtimes.
func TestCopyCache(t *testing.T) {
	e := newEnv(t)
	c := cache.NewLocal(e.store)
	df := "FROM {{REG}}/library/busybox\nCOPY app/ /app/\nCOPY app/a.txt /single\n"
	files := map[string]file{"app/a.txt": {content: "a"}, "app/sub/b.txt": {content: "b"}}
	at := func(when time.Time, cacheCopies bool, log *bytes.Buffer) func(*build.Options) {
		return func(o *build.Options) {
			o.Timestamp = nil
			o.Cache = c
			o.CacheCopies = cacheCopies
			o.Log = log
			filepath.Walk(o.ContextDir, func(p string, fi os.FileInfo, err error) error {
				if err == nil {
					os.Chtimes(p, when, when)
				}
				return nil
			})
		}
	}
	var l1, l2, l3 bytes.Buffer
	first := layerDigests(t, e.mustBuild(t, df, files, at(time.Now().Add(-time.Hour), true, &l1)))
	second := layerDigests(t, e.mustBuild(t, df, files, at(time.Now(), true, &l2)))
	n := len(first)
	if strings.Contains(l1.String(), "CACHED") || strings.Count(l2.String(), "CACHED") != 2 {
		t.Fatalf("logs:\n%s\n---\n%s", l1.String(), l2.String())
	}
	if first[n-2] != second[n-2] || first[n-1] != second[n-1] {
		t.Errorf("same files, new mtimes: layers %v then %v", first[n-2:], second[n-2:])
	}
	files["app/sub/b.txt"] = file{content: "B"}
	third := layerDigests(t, e.mustBuild(t, df, files, at(time.Now(), true, &l3)))
	if third[n-2] == first[n-2] || third[n-1] != first[n-1] || strings.Count(l3.String(), "CACHED") != 1 {
		t.Errorf("changed b.txt: layers %v (first %v); log:\n%s", third[n-2:], first[n-2:], l3.String())
	}
	var l4 bytes.Buffer
	fourth := layerDigests(t, e.mustBuild(t, df, files, at(time.Now().Add(time.Hour), false, &l4)))
	if fourth[n-1] == first[n-1] || strings.Contains(l4.String(), "CACHED") {
		t.Errorf("without CacheCopies the COPY was taken from the cache: %v; log:\n%s", fourth[n-1], l4.String())
	}
}
