package cli

import (
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/kiln-build/kiln/pkg/registry"
)

// storeRef normalises an image name the way docker does ("app" is
// docker.io/library/app:latest) into the string the store keeps.
func storeRef(s string, g *globals) (name.Reference, error) {
	r, err := registry.New(registry.Options{Insecure: g.insecure}).ParseReference(s)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// tagRef parses a -t value: a name with an optional tag, never a digest.
func tagRef(s string, g *globals) (name.Tag, error) {
	r, err := storeRef(s, g)
	if err != nil {
		return name.Tag{}, err
	}
	t, ok := r.(name.Tag)
	if !ok {
		return name.Tag{}, fmt.Errorf("invalid tag %q: a tag cannot contain a digest", s)
	}
	return t, nil
}

// displayRepo shows a repository as docker does: Docker Hub's library
// images by their short name.
func displayRepo(repo string) string { return registry.FamiliarString(repo) }
