package registry

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

// TestCopyTargets: what `kiln copy SRC DST...` copies where, read without
// a registry: a destination without tag or digest keeps the source's, and
// --all-tags takes repositories only.
func TestCopyTargets(t *testing.T) {
	c := New(Options{})
	names := func(refs []name.Reference) string {
		var s []string
		for _, r := range refs {
			s = append(s, r.Name())
		}
		return strings.Join(s, " ")
	}
	dg := "sha256:" + strings.Repeat("a", 64)
	for _, tc := range []struct {
		src          string
		dsts         []string
		local, all   bool
		wantSrc, dst string
	}{
		{"example.com/app:1", []string{"example.com/b", "example.com/c:2"}, false, false, "example.com/app:1", "example.com/b:1 example.com/c:2"},
		{"example.com/app@" + dg, []string{"example.com/b", "localhost:5000/c"}, false, false, "example.com/app@" + dg, "example.com/b@" + dg + " localhost:5000/c@" + dg},
		{"example.com/app", []string{"example.com/b"}, false, false, "example.com/app:latest", "example.com/b:latest"},
		{"app:1", []string{"example.com/b"}, true, false, "", "example.com/b:latest"},
		{"example.com/app", []string{"example.com/b"}, false, true, "example.com/app:latest", "example.com/b:latest"},
	} {
		src, dsts, err := c.CopyTargets(tc.src, tc.dsts, tc.local, tc.all)
		if err != nil {
			t.Errorf("%s %v: %v", tc.src, tc.dsts, err)
			continue
		}
		gotSrc := ""
		if src != nil {
			gotSrc = src.Name()
		}
		if gotSrc != tc.wantSrc || names(dsts) != tc.dst {
			t.Errorf("%s %v (local %v, all %v): %q -> %q, want %q -> %q", tc.src, tc.dsts, tc.local, tc.all, gotSrc, names(dsts), tc.wantSrc, tc.dst)
		}
	}
	for _, bad := range []struct {
		src        string
		dsts       []string
		local, all bool
		want       string
	}{
		{"UPPER/x:1", []string{"example.com/b"}, false, false, "source: "},
		{"example.com/app:1", []string{"UPPER/x:1"}, false, false, "destination: "},
		{"example.com/app", []string{"example.com/b:1"}, false, true, "--all-tags: destination example.com/b:1 must be a repository"},
		{"example.com/app:1", []string{"example.com/b"}, false, true, "--all-tags: source example.com/app:1 must be a repository"},
		{"example.com/app@" + dg, []string{"example.com/b"}, false, true, "--all-tags: source example.com/app@" + dg + " must be a repository"},
		{"app:1", []string{"example.com/b"}, true, true, "a local: source is one image"},
		{"example.com/app", []string{"example.com/b", "example.com/c"}, false, true, "--all-tags takes one destination repository"},
	} {
		if _, _, err := c.CopyTargets(bad.src, bad.dsts, bad.local, bad.all); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s %v (local %v, all %v): %v, want %q", bad.src, bad.dsts, bad.local, bad.all, err, bad.want)
		}
	}
}
