package build

import (
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/dockerfile"
)

// Material is an image a build read (a FROM, COPY --from or RUN --mount
// from= image), for SBOMs and provenance.
type Material struct {
	// Ref is the reference as the Dockerfile (or --build-context) gave it.
	Ref string
	// Digest is the manifest digest of the image used (the platform's).
	Digest v1.Hash
	// Base is set for the image the built image's stage starts from.
	Base bool
}

// noteBase remembers the image the target stage of plan is built on
// (following FROM an earlier stage back to its image; "" for scratch).
func (b *builder) noteBase(plan *dockerfile.Plan) {
	s := plan.Target
	for s != nil && s.BaseStage != nil {
		s = s.BaseStage
	}
	if s == nil || strings.EqualFold(s.Base, "scratch") {
		return
	}
	b.mu.Lock()
	b.finalBase = s.Base
	b.mu.Unlock()
}

// materials lists the images the build read, sorted by reference.
func (b *builder) materials() []Material {
	b.mu.Lock()
	defer b.mu.Unlock()
	seen := map[string]bool{}
	var out []Material
	for _, src := range b.images {
		d, err := src.img.Digest()
		if err != nil || seen[src.ref+d.String()] {
			continue
		}
		seen[src.ref+d.String()] = true
		out = append(out, Material{Ref: src.ref, Digest: d, Base: src.ref == b.finalBase})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref+out[i].Digest.String() < out[j].Ref+out[j].Digest.String() })
	return out
}
