package archive

import (
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ImageLayers returns an Opener of the uncompressed stream of each layer of
// img, bottom first. Nothing is fetched until an Opener is called, so a
// FindFile on a remote image downloads only the layers it opens.
func ImageLayers(img v1.Image) ([]Opener, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("image layers: %w", err)
	}
	ops := make([]Opener, len(layers))
	for i, l := range layers {
		ops[i] = func() (io.ReadCloser, error) {
			rc, err := l.Uncompressed()
			if err != nil {
				d, _ := l.Digest()
				return nil, fmt.Errorf("layer %d (%s): %w", i, d, err)
			}
			return rc, nil
		}
	}
	return ops, nil
}
