package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/registry"
	"github.com/kiln-build/kiln/pkg/store"
)

// registryCache is a step-cache repository (--cache-from, --cache-to):
// entries are tagged with their keys.
type registryCache struct {
	repo name.Repository
	ro   registry.Options
	st   *store.Store
}

// parseCacheRepo parses a --cache-from/--cache-to value: a repository,
// without tag or digest.
func parseCacheRepo(flag, s string, ro registry.Options, st *store.Store) (*registryCache, error) {
	ref, err := registry.ParseReference(s, ro)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, s, err)
	}
	if hasTagOrDigest(s) {
		return nil, fmt.Errorf("%s %s: want a repository (the cache's tags are its keys), not a tag or digest", flag, s)
	}
	return &registryCache{repo: ref.Context(), ro: ro, st: st}, nil
}

// hasTagOrDigest reports whether a reference names a tag or digest (a
// colon after the last slash, or an @; a registry's port comes before the
// first slash).
func hasTagOrDigest(s string) bool {
	return strings.Contains(s, "@") || strings.Contains(s[strings.LastIndexByte(s, '/')+1:], ":")
}

func (r *registryCache) Name() string { return r.repo.Name() }

func (r *registryCache) Manifest(ctx context.Context, tag string) ([]byte, error) {
	d, err := registry.Fetch(ctx, r.repo.Tag(tag), r.ro)
	if errors.Is(err, registry.ErrManifestUnknown) || errors.Is(err, registry.ErrNameUnknown) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return d.Manifest, nil
}

func (r *registryCache) Blob(ctx context.Context, h v1.Hash) (io.ReadCloser, error) {
	return registry.OpenBlob(ctx, r.repo.Name(), h, r.ro)
}

func (r *registryCache) Push(ctx context.Context, tag string, d v1.Descriptor) error {
	_, err := pushStored(ctx, r.st, d, []name.Reference{r.repo.Tag(tag)}, r.ro)
	return err
}
