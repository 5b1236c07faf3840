package registry

import (
	"context"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/kiln-build/kiln/pkg/store"
)

// TestPushTargets: what `kiln push IMAGE [DEST]` sends where, chosen
// from the store without a registry.
func TestPushTargets(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := New(Options{})
	img, _ := random.Image(64, 1)
	other, _ := random.Image(64, 1)
	d, err := st.WriteImage(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	od, err := st.WriteImage(context.Background(), other)
	if err != nil {
		t.Fatal(err)
	}
	for ref, desc := range map[string]v1.Descriptor{"example.com/app:1": d, "example.com/app:2": od, "example.com/other:1": d} {
		if err := st.Tag(ref, desc); err != nil {
			t.Fatal(err)
		}
	}

	got, err := c.PushTargets(st, "example.com/app:1", nil, false)
	if err != nil || len(got) != 1 || got[0].Desc.Digest != d.Digest || got[0].Refs[0].Name() != "example.com/app:1" {
		t.Fatalf("IMAGE alone: %+v, %v", got, err)
	}
	dest := mustRef(t, "example.com/copy:x", Options{})
	got, err = c.PushTargets(st, "example.com/app:2", dest, false)
	if err != nil || len(got) != 1 || got[0].Desc.Digest != od.Digest || got[0].Refs[0].Name() != "example.com/copy:x" {
		t.Fatalf("IMAGE DEST: %+v, %v", got, err)
	}
	got, err = c.PushTargets(st, "example.com/app", nil, true)
	if err != nil || len(got) != 2 {
		t.Fatalf("--all-tags: %+v, %v", got, err)
	}
	for _, tg := range got {
		if !strings.HasPrefix(tg.Refs[0].Name(), "example.com/app:") {
			t.Fatalf("--all-tags pushes %s", tg.Refs[0].Name())
		}
	}
	for _, bad := range []struct {
		image string
		dest  bool
		all   bool
		want  string
	}{
		{"example.com/app", true, true, "give no DESTINATION"},
		{"example.com/app:1", false, true, "names a tag or digest"},
		{"example.com/none", false, true, "no local tags"},
		{d.Digest.String(), false, false, "not a name to push to"},
		{"example.com/missing:1", false, false, "not found"},
	} {
		dr := dest
		if !bad.dest {
			dr = nil
		}
		if _, err := c.PushTargets(st, bad.image, dr, bad.all); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("PushTargets(%s, dest %v, all %v): %v, want %q", bad.image, bad.dest, bad.all, err, bad.want)
		}
	}
}
