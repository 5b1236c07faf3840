package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testutil"
)

// TestBuildErrors: a failed build exits non-zero, prints no image ID, and
// says where the problem is (the Dockerfile's file:line, or the reference).
func TestBuildErrors(t *testing.T) {
	testutil.SkipIfShort(t)
	reg := testutil.StartRegistry(t)
	cases := []struct {
		name, dockerfile string
		want             []string // all in stderr
	}{
		{
			name:       "unknown instruction",
			dockerfile: "FROM scratch\nCOPY a /a\nFROBNICATE now\n",
			want:       []string{"Dockerfile:3"},
		},
		{
			name:       "missing COPY source",
			dockerfile: "FROM scratch\nCOPY a /a\nCOPY does-not-exist /x\n",
			want:       []string{"Dockerfile:3", "does-not-exist"},
		},
		{
			name:       "base image not in the registry",
			dockerfile: "FROM " + reg + "/library/nope:1\nCOPY a /a\n",
			want:       []string{reg + "/library/nope:1"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.TempDir()
			writeFile(t, filepath.Join(ctx, "Dockerfile"), c.dockerfile)
			writeFile(t, filepath.Join(ctx, "a"), "a\n")
			r := kilnRun(t, nil, "--root", t.TempDir(), "build", ctx)
			if r.err == nil {
				t.Fatalf("build succeeded, want a failure\n%s", r)
			}
			if imageID.MatchString(strings.TrimSpace(r.stdout)) {
				t.Errorf("a failed build printed an image ID\n%s", r)
			}
			for _, w := range c.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not name %q\n%s", w, r)
				}
			}
		})
	}
}
