package oci

import (
	"errors"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// manifestOnly has a manifest but is neither an image nor an index.
type manifestOnly struct{}

func (manifestOnly) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (manifestOnly) Digest() (v1.Hash, error)            { return v1.Hash{}, nil }
func (manifestOnly) Size() (int64, error)                { return 0, nil }
func (manifestOnly) RawManifest() ([]byte, error)        { return nil, nil }

func TestImageOrIndex(t *testing.T) {
	t.Parallel()
	if err := Check(empty.Image); err != nil {
		t.Errorf("image: %v", err)
	}
	if err := Check(empty.Index); err != nil {
		t.Errorf("index: %v", err)
	}
	if _, ok := AsImage(empty.Image); !ok || IsIndex(empty.Image) {
		t.Error("an image is not seen as one")
	}
	if _, ok := AsIndex(empty.Index); !ok || !IsIndex(empty.Index) {
		t.Error("an index is not seen as one")
	}
	if _, ok := AsImage(empty.Index); ok {
		t.Error("an index is taken for an image")
	}
	for _, a := range []Artifact{nil, manifestOnly{}} {
		if err := Check(a); !errors.Is(err, ErrNotImageOrIndex) {
			t.Errorf("Check(%T) = %v", a, err)
		}
	}
	d, err := Descriptor(empty.Index)
	want, _ := empty.Index.Digest()
	if err != nil || d.Digest != want || d.MediaType != types.OCIImageIndex || d.Size == 0 {
		t.Errorf("Descriptor(empty.Index) = %+v, %v", d, err)
	}
}
