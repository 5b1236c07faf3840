package harness

import (
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ParseRef parses an image reference; registries on loopback addresses and
// localhost are spoken to over plain HTTP.
func ParseRef(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("parse reference %q: %w", ref, err)
	}
	return r, nil
}

// Push writes img (its blobs, then its manifest) to ref.
func Push(ref string, img v1.Image) error {
	r, err := ParseRef(ref)
	if err != nil {
		return err
	}
	if err := remote.Write(r, img); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

// PushIndex writes idx (its images, then the index manifest) to ref.
func PushIndex(ref string, idx v1.ImageIndex) error {
	r, err := ParseRef(ref)
	if err != nil {
		return err
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		return fmt.Errorf("push index %s: %w", ref, err)
	}
	return nil
}
