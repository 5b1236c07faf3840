package registry

import (
	"context"
	"errors"
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

// PushTargets is what `kiln push IMAGE [DEST]` sends where: the stored
// image IMAGE names (see ResolveStored) to dest, or to the name it is
// stored under when dest is nil; with allTags, every stored tag of the
// repository IMAGE names, each to its own name (docker push --all-tags).
func (c *Client) PushTargets(st *store.Store, image string, dest name.Reference, allTags bool) ([]PushTarget, error) {
	if allTags {
		if dest != nil {
			return nil, errors.New("--all-tags pushes a repository's tags to their own names: give no DESTINATION")
		}
		r, err := c.ParseReference(image)
		if err != nil {
			return nil, err
		}
		if t, ok := r.(name.Tag); !ok || strings.HasSuffix(image, ":"+t.TagStr()) {
			return nil, fmt.Errorf("--all-tags: %s names a tag or digest; give a repository", image)
		}
		return c.storedTags(st, r.Context().Name())
	}
	d, stored, err := c.ResolveStored(st, image)
	if err != nil {
		return nil, err
	}
	ref := dest
	if ref == nil {
		if stored == "" || strings.Contains(stored, "@") {
			return nil, fmt.Errorf("%s is not a name to push to: give a destination (kiln push %s REGISTRY/REPOSITORY:TAG)", image, image)
		}
		if ref, err = c.ParseReference(stored); err != nil {
			return nil, err
		}
	}
	return []PushTarget{{Desc: d, Refs: []name.Reference{ref}}}, nil
}

// ResolveStored finds an image (or index) in st: by name, normalised as
// ParseReference does (so "app" is docker.io/library/app:latest); by
// REPO@sha256:…, the manifest with that digest whatever name the store
// keeps it under (a digest names its content); or by image ID, full or a
// unique prefix. It returns the name it was found under, "" when found by
// digest or ID.
func (c *Client) ResolveStored(st *store.Store, s string) (v1.Descriptor, string, error) {
	if r, err := c.ParseReference(s); err == nil {
		if d, err := st.Resolve(r.Name()); err == nil {
			return d, r.Name(), nil
		}
		if dg, ok := r.(name.Digest); ok {
			if d, err := st.Resolve(dg.DigestStr()); err == nil && d.Digest.String() == dg.DigestStr() {
				return d, "", nil
			}
			return v1.Descriptor{}, "", fmt.Errorf("image %q not found in the local store (no manifest %s)", s, dg.DigestStr())
		}
	}
	if id := strings.TrimPrefix(s, "sha256:"); len(id) >= 4 && strings.Trim(id, "0123456789abcdef") == "" {
		d, err := st.Resolve(s)
		if err != nil {
			return v1.Descriptor{}, "", err
		}
		return d, "", nil
	}
	return v1.Descriptor{}, "", fmt.Errorf("image %q not found in the local store", s)
}

// storedTags lists every tag of repository repo (a name as the store
// keeps it, "host/path") in st, each as a target pushed to its own name.
// No tag is an error.
func (c *Client) storedTags(st *store.Store, repo string) ([]PushTarget, error) {
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
