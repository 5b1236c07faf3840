package store

import (
	"bytes"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
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
