package attest

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/registry"
)

// TestAttachOCIArtifact: with oci-artifact the attestation manifest has
// BuildKit's artifact shape, stays in the index, and a push makes it a
// referrer of its image on a registry with the referrers API and on one
// without (the referrers tag).
func TestAttachOCIArtifact(t *testing.T) {
	t.Parallel()
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	st := NewStatement(SLSAProvenancePredicate, map[string]any{"buildType": "x"}, "", d, nil)
	idx, err := Attach([]Child{{Image: img, Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}, Statements: []Statement{st}}}, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 2 {
		t.Fatalf("index: %v, %v", im, err)
	}
	att, err := idx.Image(im.Manifests[1].Digest)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := att.RawManifest()
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	size, _ := img.Size()
	if m.ArtifactType != AttestationArtifactType || m.Config.MediaType != "application/vnd.oci.empty.v1+json" || m.Config.Size != 2 ||
		m.Subject == nil || m.Subject.Digest != d || m.Subject.Size != size || len(m.Layers) != 1 {
		t.Errorf("attestation manifest:\n%s", raw)
	}
	if im.Manifests[1].Annotations[RefDigestAnnotation] != d.String() {
		t.Errorf("the index lost buildx's annotations: %v", im.Manifests[1].Annotations)
	}
	for _, api := range []bool{true, false} {
		addr := testutil.StartInProcessRegistry(t)
		if api {
			addr = testutil.StartReferrersRegistry(t)
		}
		ref, _ := name.ParseReference(addr + "/team/app:1")
		if _, err := registry.New(registry.Options{}).Write(context.Background(), idx, []name.Reference{ref}); err != nil {
			t.Fatal(err)
		}
		refs, err := registry.New(registry.Options{}).Referrers(context.Background(), ref.Context(), d, "")
		if err != nil || len(refs) != 1 || refs[0].Digest != im.Manifests[1].Digest {
			t.Errorf("api=%v: referrers of the image: %v, %v", api, refs, err)
		}
		if !api && refs[0].ArtifactType != AttestationArtifactType {
			t.Errorf("the referrers tag's descriptor has artifactType %q", refs[0].ArtifactType)
		}
	}
}
