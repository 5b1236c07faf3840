package registry

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/store"
)

// PushStored pushes the store's image or index d to refs (see Write) and
// returns the descriptor each ref now names. Blobs the store knows only by
// their registry (base layers never downloaded) are mounted from there, and
// every blob a destination now holds is recorded as a source of it
// (store.RecordSource), so that a later push to a sibling repository
// mounts it instead of uploading it, as docker's distribution metadata
// does; a failure to record is no failure of the push.
func (c *Client) PushStored(ctx context.Context, st *store.Store, d v1.Descriptor, refs []name.Reference) (v1.Descriptor, error) {
	a, err := st.Artifact(d)
	if err != nil {
		return v1.Descriptor{}, err
	}
	seen := func(h v1.Hash, repo string) { _ = st.RecordSource(h, repo) }
	return c.Write(ctx, a, refs, WithSources(st.Sources), WithSeen(seen))
}

// PushTarget is an image or index of the store and where it goes.
type PushTarget struct {
	Desc v1.Descriptor
	Refs []name.Reference
}

// StoredTags lists every tag of repository repo (a name as the store
// keeps it, "host/path") in st, each as a target pushed to its own name
// (push --all-tags). No tag is an error.
func (c *Client) StoredTags(st *store.Store, repo string) ([]PushTarget, error) {
	entries, err := st.List()
	if err != nil {
		return nil, err
	}
	var out []PushTarget
	for _, e := range entries {
		ref, err := c.ParseReference(e.Ref)
		if err != nil {
			return nil, err
		}
		if t, ok := ref.(name.Tag); !ok || t.Context().Name() != repo || !strings.HasSuffix(e.Ref, ":"+t.TagStr()) {
			continue
		}
		out = append(out, PushTarget{Desc: e.Descriptor, Refs: []name.Reference{ref}})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no local tags of %s", FamiliarString(repo))
	}
	return out, nil
}
