package oci

import (
	"errors"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Artifact is an image (v1.Image) or an image index (v1.ImageIndex): a
// manifest with its media type, digest and size.
type Artifact interface {
	MediaType() (types.MediaType, error)
	Digest() (v1.Hash, error)
	Size() (int64, error)
	RawManifest() ([]byte, error)
}

// ErrNotImageOrIndex is Check's error for a nil artifact or one that is
// neither an image nor an index.
var ErrNotImageOrIndex = errors.New("not an image or an image index")

// AsImage returns a as an image, if it is one.
func AsImage(a Artifact) (v1.Image, bool) {
	img, ok := a.(v1.Image)
	return img, ok
}

// AsIndex returns a as an image index, if it is one.
func AsIndex(a Artifact) (v1.ImageIndex, bool) {
	idx, ok := a.(v1.ImageIndex)
	return idx, ok
}

// IsIndex reports whether a is an image index.
func IsIndex(a Artifact) bool {
	_, ok := AsIndex(a)
	return ok
}

// Check reports an artifact that is neither an image nor an index (nil
// included).
func Check(a Artifact) error {
	if a == nil {
		return ErrNotImageOrIndex
	}
	_, img := AsImage(a)
	_, idx := AsIndex(a)
	if img == idx {
		return ErrNotImageOrIndex
	}
	return nil
}

// Descriptor describes a: its media type, digest and size.
func Descriptor(a Artifact) (v1.Descriptor, error) {
	mt, err := a.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	d, err := a.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	n, err := a.Size()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Digest: d, Size: n}, nil
}
