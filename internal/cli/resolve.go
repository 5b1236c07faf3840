package cli

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/store"
)

// resolveLocal finds an image in the store by name (normalised like
// docker's), by digest, or by image ID (full or a unique prefix).
func resolveLocal(st *store.Store, g *globals, s string) (v1.Descriptor, string, error) {
	if r, err := storeRef(s, g); err == nil {
		if d, err := st.Resolve(r.Name()); err == nil {
			return d, r.Name(), nil
		}
		if dg, ok := r.(name.Digest); ok {
			// REPO@sha256:…: the manifest with that digest, whatever name
			// the store keeps it under (a digest names its content).
			if d, err := st.Resolve(dg.DigestStr()); err == nil && d.Digest.String() == dg.DigestStr() {
				return d, "", nil
			}
			return v1.Descriptor{}, "", fmt.Errorf("image %q not found in the local store (no manifest %s)", s, dg.DigestStr())
		}
	}
	id := strings.TrimPrefix(s, "sha256:")
	if isHex(id) {
		d, err := st.Resolve(s)
		if err == nil {
			return d, "", nil
		}
		return v1.Descriptor{}, "", err
	}
	return v1.Descriptor{}, "", fmt.Errorf("image %q not found in the local store", s)
}

func isHex(s string) bool {
	if len(s) < 4 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
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
