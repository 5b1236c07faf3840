package build_test

import (
	"bytes"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/build"
	"github.com/kiln-build/kiln/pkg/cache"
	"github.com/kiln-build/kiln/pkg/store"
)

// TestCopySpeculationNeverChangesTheImage: on a fresh store a COPY-only
// stage guesses what its destinations are in the base and makes the base's
// path index meanwhile. Whether the guesses are right (the base has no
// /app; /usr/local/bin is a directory) or wrong (/bin is a symlink, /data
// a directory, /file a file), the image is the one a build that had the
// index before it started makes; a wrong guess builds the stage again and
// says so, a right one does not.
func TestCopySpeculationNeverChangesTheImage(t *testing.T) {
	e := newEnv(t)
	testutil.PushImage(t, e.reg+"/library/probe:1", probeBase(t))
	cases := []struct {
		name, df string
		wrong    bool
		// reused is a step whose layer the second try takes from the
		// store's cache (the wrong guess did not change it).
		reused string
	}{
		{"absent, right", "WORKDIR /app\nCOPY a dir ./\n", false, ""},
		{"a directory, right", "COPY a /usr/local/bin\nCOPY dir /opt/\n", false, ""},
		{"below a whiteout, right", "COPY a /gone/y\n", false, ""},
		{"a symlinked parent, wrong", "COPY a /bin/x\n", true, ""},
		{"a symlinked directory, wrong", "COPY dir /bin\n", true, ""},
		{"a directory of the base, wrong", "COPY a /data\n", true, ""},
		{"a file of the base, wrong", "COPY a /file\n", true, ""},
		{"a symlink to a directory, wrong", "WORKDIR /app\nCOPY a .\nCOPY a /data/link\n", true, "COPY a ."},
		{"two stages", "FROM {{REG}}/library/probe:1 AS one\nCOPY a /bin/\n" +
			"FROM {{REG}}/library/probe:1\nCOPY --from=one /usr/bin/a /x/\nCOPY a /usr/local/bin\n", true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			st, err := store.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			var log bytes.Buffer
			df := c.df
			if !strings.HasPrefix(df, "FROM") {
				df = "FROM {{REG}}/library/probe:1\n" + df
			}
			withStore := func(o *build.Options) { o.Store = st; o.Log = &log; o.Cache = cache.NewLocal(st) }
			guessed := e.mustBuild(t, df, destContext, withStore)
			if !strings.Contains(log.String(), "going on with guesses") {
				t.Errorf("the stage did not guess:\n%s", log.String())
			}
			if redone := strings.Contains(log.String(), "building the stage again"); redone != c.wrong {
				t.Errorf("stage built again: %v, want %v:\n%s", redone, c.wrong, log.String())
			}
			if c.reused != "" && !hasCachedLine(log.String(), c.reused) {
				t.Errorf("the second try wrote %s again:\n%s", c.reused, log.String())
			}
			// The index is in the store now: this build asks it and
			// guesses nothing.
			log.Reset()
			known := e.mustBuild(t, df, destContext, withStore)
			if strings.Contains(log.String(), "guess") || strings.Contains(log.String(), "path index") {
				t.Errorf("the second build guessed or indexed:\n%s", log.String())
			}
			if a, b := layerDiffIDs(t, guessed), layerDiffIDs(t, known); a != b {
				t.Errorf("layers differ:\n%s\n%s\nguessed:\n%s\nknown:\n%s", a, b,
					strings.Join(testutil.ImageTree(t, guessed), "\n"), strings.Join(testutil.ImageTree(t, known), "\n"))
			}
		})
	}
}

func layerDiffIDs(t *testing.T, img v1.Image) string {
	t.Helper()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range cfg.RootFS.DiffIDs {
		ids = append(ids, d.String())
	}
	return strings.Join(ids, " ")
}
