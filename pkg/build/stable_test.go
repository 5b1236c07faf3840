package build_test

import (
	"archive/tar"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/build"
	"github.com/kiln-build/kiln/pkg/cache"
)

// Without --timestamp, builds differ in their created times only: every
// layer is the same, so a rebuild pushes nothing new (WORKDIR's, dated
// with the first build's time, comes from the store's step cache, as
// BuildKit's does).
func TestLayersStableWithoutTimestamp(t *testing.T) {
	e := newEnv(t)
	df := "FROM {{REG}}/library/busybox\nWORKDIR /app\nCOPY lib/ ./lib/\nCOPY <<EOF /etc/motd\nhi\nEOF\nCOPY --chown=1000 app/conf /conf/\n"
	noTS := func(o *build.Options) { o.Timestamp, o.Cache = nil, cache.NewLocal(e.store) }
	a := e.mustBuild(t, df, copyContext, noTS)
	b := e.mustBuild(t, df, copyContext, noTS)
	la, _ := a.Layers()
	lb, _ := b.Layers()
	if len(la) != 5 || len(lb) != 5 {
		t.Fatalf("%d and %d layers", len(la), len(lb))
	}
	for i := range la {
		da, _ := la[i].Digest()
		db, _ := lb[i].Digest()
		if da != db {
			t.Errorf("layer %d differs between two builds of the same inputs: %s, %s", i, da, db)
		}
	}
}

// WORKDIR's directories carry the build's time, as BuildKit's mkdir: the
// build's start, or --timestamp; never 1970. A rebuild with the store's
// step cache takes the same layer; --no-cache dates a new one.
func TestWorkdirBuildTime(t *testing.T) {
	e := newEnv(t)
	mtimes := func(img v1.Image) map[string]time.Time {
		t.Helper()
		ls, err := img.Layers()
		if err != nil || len(ls) != 1 {
			t.Fatalf("%d layers (%v), want WORKDIR's", len(ls), err)
		}
		rc, err := ls[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		out := map[string]time.Time{}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			out[h.Name] = h.ModTime
		}
		return out
	}
	df := "FROM scratch\nWORKDIR /app/sub\n"
	start := time.Now().Add(-2 * time.Second)
	withCache := func(o *build.Options) { o.Timestamp, o.Cache = nil, cache.NewLocal(e.store) }
	first := e.mustBuild(t, df, nil, withCache)
	got := mtimes(first)
	if len(got) != 2 {
		t.Fatalf("entries %v, want app/ and app/sub/", got)
	}
	for name, mt := range got {
		if mt.Before(start) || mt.After(time.Now().Add(time.Second)) {
			t.Errorf("%s: mtime %s, want the build's time (after %s)", name, mt, start)
		}
	}
	again := e.mustBuild(t, df, nil, withCache)
	d1, _ := first.Digest()
	d2, _ := again.Digest()
	l1, _ := first.Layers()
	l2, _ := again.Layers()
	ld1, _ := l1[0].Digest()
	ld2, _ := l2[0].Digest()
	if ld1 != ld2 {
		t.Errorf("a rebuild with the step cache made a new WORKDIR layer (%s, %s; images %s, %s)", ld1, ld2, d1, d2)
	}
	for name, mt := range mtimes(e.mustBuild(t, df, nil)) { // --timestamp 1700000000
		if mt.Unix() != 1700000000 {
			t.Errorf("with --timestamp: %s mtime %s", name, mt)
		}
	}
}
