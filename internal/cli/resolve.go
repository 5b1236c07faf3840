package cli

import (
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/registry"
	"github.com/kiln-build/kiln/pkg/store"
)

// resolveLocal finds an image in the store by name (normalised like
// docker's), by digest, or by image ID (full or a unique prefix): see
// registry.Client.ResolveStored.
func resolveLocal(st *store.Store, g *globals, s string) (v1.Descriptor, string, error) {
	return registry.New(registry.Options{Insecure: g.insecure}).ResolveStored(st, s)
}

// refsOf lists the refs that point at digest d.
func refsOf(st *store.Store, d v1.Hash) ([]string, error) {
	entries, err := st.List()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.Descriptor.Digest == d {
			out = append(out, e.Ref)
		}
	}
	return out, nil
}
