package store

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/oci"
)

// Artifact opens the stored image or index d describes (as Resolve and
// List give it): an image index when its media type is one, an image
// otherwise.
func (s *Store) Artifact(d v1.Descriptor) (oci.Artifact, error) {
	if d.MediaType.IsIndex() {
		return s.Index(d.Digest)
	}
	return s.Image(d.Digest)
}

// WriteArtifact stores a (WriteImage or WriteIndex).
func (s *Store) WriteArtifact(ctx context.Context, a oci.Artifact, opts ...WriteOption) (v1.Descriptor, error) {
	if img, ok := oci.AsImage(a); ok {
		return s.WriteImage(ctx, img, opts...)
	}
	if idx, ok := oci.AsIndex(a); ok {
		return s.WriteIndex(ctx, idx, opts...)
	}
	return v1.Descriptor{}, fmt.Errorf("store: %w", oci.ErrNotImageOrIndex)
}
