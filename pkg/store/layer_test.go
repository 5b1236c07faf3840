package store

import (
	"bytes"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func TestLayerDescriptorKept(t *testing.T) {
	s := newStore(t)
	data := []byte("layer with annotations")
	h := sha256Hash(data)
	s.WriteBlob(h, bytes.NewReader(data))
	l, err := s.Layer(v1.Descriptor{MediaType: types.OCIUncompressedLayer, Digest: h, Annotations: map[string]string{"k": "v"}}, h)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), l)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.Layers[0].Annotations["k"] != "v" || m.Layers[0].Size != int64(len(data)) {
		t.Fatalf("layer descriptor in manifest: %+v", m.Layers[0])
	}
}

// sameImage checks that got has img's manifest bytes, config and layers.
func sameImage(t *testing.T, got, img v1.Image) {
	t.Helper()
	wantRaw, _ := img.RawManifest()
	gotRaw, err := got.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(wantRaw, gotRaw) {
		t.Fatalf("manifest differs:\n got %s\nwant %s", gotRaw, wantRaw)
	}
	wl, _ := img.Layers()
	gl, _ := got.Layers()
	if len(wl) != len(gl) {
		t.Fatalf("%d layers, want %d", len(gl), len(wl))
	}
	for i := range wl {
		if !bytes.Equal(readAll(t, wl[i].Compressed), readAll(t, gl[i].Compressed)) {
			t.Fatalf("layer %d differs", i)
		}
	}
	if err := validate.Image(got); err != nil {
		t.Fatal(err)
	}
}
