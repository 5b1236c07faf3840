package build_test

import (
	"testing"

	"github.com/kiln-build/kiln/pkg/build"
)

// Without --timestamp, builds differ in their created times only: every
// layer is the same, so a rebuild pushes nothing new.
func TestLayersStableWithoutTimestamp(t *testing.T) {
	e := newEnv(t)
	df := "FROM {{REG}}/library/busybox\nWORKDIR /app\nCOPY lib/ ./lib/\nCOPY <<EOF /etc/motd\nhi\nEOF\nCOPY --chown=1000 app/conf /conf/\n"
	noTS := func(o *build.Options) { o.Timestamp = nil }
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
