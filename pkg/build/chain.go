package build

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	plat "github.com/kiln-build/kiln/pkg/platform"
)

// Chain keys name a stage's filesystem state by how it was made, for the
// step cache: the base (its diff IDs), then each layer step in order, a
// COPY/ADD/WORKDIR layer by its content key (its entries and their content,
// without times: a fresh checkout has new mtimes but the same files) and a
// RUN step by its cache key. A RUN step's key includes the chain below it,
// so changing a file that an earlier COPY adds runs the RUN again, while a
// new checkout of the same files does not. Chain keys are kept only when a
// build has a step cache and a RUN step (b.keyed); a COPY-only build never
// pays for them.

// chainLink is one step of a chain: a known key, or a layer still being
// written whose content key comes with it.
type chainLink struct {
	key   string
	layer *futureLayer
}

// chainKey folds the stage's links into one key, waiting for layers still
// being written.
func (s *stageState) chainKey() (string, error) {
	return foldChain(s.links)
}

func foldChain(links []chainLink) (string, error) {
	h := sha256.New()
	for i, l := range links {
		part := l.key
		if l.layer != nil {
			if _, err := l.layer.wait(); err != nil {
				return "", err
			}
			if l.layer.contentKey == "" {
				return "", fmt.Errorf("layer %d has no content key", i)
			}
			part = "layer " + l.layer.contentKey
		}
		fmt.Fprintf(h, "%s\n", part)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// baseLink is the first link of a stage built on an image: its layers'
// diff IDs (so the same content from another registry or mirror is the
// same chain).
func baseLink(diffIDs []v1.Hash) chainLink {
	h := sha256.New()
	fmt.Fprintf(h, "base")
	for _, d := range diffIDs {
		fmt.Fprintf(h, " %s", d)
	}
	return chainLink{key: hex.EncodeToString(h.Sum(nil))}
}

func scratchLink(p v1.Platform) chainLink {
	return chainLink{key: "scratch " + plat.Format(p)}
}
