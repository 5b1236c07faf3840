package registry

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/kiln-build/kiln/internal/testutil"
)

func TestMirrorRefs(t *testing.T) {
	isolateEnv(t)
	o := Options{Mirrors: []string{"https://mirror.example.com", "harbor.example.com/hub-proxy/", "http://10.0.0.5:5000/v2/"}}
	var got []string
	for _, r := range o.readRefs(mustRef(t, "busybox:1.36", o)) {
		got = append(got, r.String()+" "+r.Context().Scheme())
	}
	want := []string{
		"mirror.example.com/library/busybox:1.36 https",
		"harbor.example.com/hub-proxy/library/busybox:1.36 https",
		"10.0.0.5:5000/library/busybox:1.36 http",
		"index.docker.io/library/busybox:1.36 https",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("readRefs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	d := "sha256:" + strings.Repeat("ab", 32)
	if r := o.readRefs(mustRef(t, "docker.io/team/app@"+d, o)); r[0].String() != "mirror.example.com/team/app@"+d {
		t.Errorf("digest ref via mirror: %v", r)
	}
	// Other registries are never mirrored.
	if r := o.readRefs(mustRef(t, "quay.io/team/app:1", o)); len(r) != 1 || r[0].String() != "quay.io/team/app:1" {
		t.Errorf("quay.io: %v", r)
	}
	for _, bad := range []string{"ftp://m.example.com", "https://", " "} {
		if err := (Options{Mirrors: []string{bad}}).CheckMirrors(); err == nil || !strings.Contains(err.Error(), "invalid registry mirror") {
			t.Errorf("mirror %q: %v", bad, err)
		}
	}
	if err := o.CheckMirrors(); err != nil {
		t.Errorf("good mirrors: %v", err)
	}
}

// TestMirrorServesDockerHub reads a Docker Hub image, its layers and a
// sourced blob through a mirror; Docker Hub itself is never contacted
// (the mirror answers everything).
func TestMirrorServesDockerHub(t *testing.T) {
	isolateEnv(t)
	mirror, sc := newScopedRegistry(t, nil)
	img := seedImage(t, mirror+"/library/busybox:1.36", nil, 2048, 2)
	o := fastOpts()
	o.Mirrors = []string{"http://" + mirror}
	ctx := context.Background()
	ref := mustRef(t, "busybox:1.36", o)
	got, desc, err := New(o).Image(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != testutil.Digest(t, img) {
		t.Fatalf("digest %s", desc.Digest)
	}
	testutil.CheckLayers(t, got)
	if _, err := New(o).Fetch(ctx, ref); err != nil {
		t.Fatal(err)
	}
	h := layerDigests(t, img)[0]
	rc, err := New(o).OpenBlob(ctx, "index.docker.io/library/busybox", h)
	if err != nil {
		t.Fatal(err)
	}
	sum, _, err := v1.SHA256(rc)
	rc.Close()
	if err != nil || sum != h {
		t.Errorf("OpenBlob via mirror: %s %v", sum, err)
	}
	// A copy from Docker Hub reads the mirror, and writes elsewhere.
	dst, _ := newScopedRegistry(t, nil)
	if _, err := New(o).Copy(ctx, ref, []name.Reference{mustRef(t, dst+"/hub/busybox:1.36", o)}); err != nil {
		t.Fatal(err)
	}
	if n := len(sc.events()); n == 0 {
		t.Error("the mirror saw no request")
	}
	r, _, err := New(o).Image(ctx, mustRef(t, dst+"/hub/busybox:1.36", o), nil)
	if err != nil || testutil.Digest(t, r) != desc.Digest {
		t.Errorf("copy via mirror: %v", err)
	}
}
