package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/tonistiigi/go-csvvalue"

	"github.com/kiln-build/kiln/pkg/registry"
	"github.com/kiln-build/kiln/pkg/store"
)

// Registry is a step-cache repository in a registry (--cache-from,
// --cache-to): entries are tagged with their keys. It is the Remote that
// kiln build uses.
type Registry struct {
	repo name.Repository
	rc   *registry.Client
	st   *store.Store
	// ignoreErr: a failed export is a warning (else it fails the build).
	ignoreErr bool
}

// ParseRegistry parses a --cache-from (write false) or --cache-to (write
// true) value, flag naming it in errors: a repository without tag or
// digest (buildah's and kaniko's form), or buildx's comma-separated form
// "type=registry,ref=REPO[,mode=min|max][,ignore-error=BOOL]
// [,image-manifest=BOOL][,oci-mediatypes=BOOL]". Anything kiln cannot
// honour is an error, never silently read as a repository name, and so is
// a repository the registry client's policy does not let kiln read (or
// write): refused before the build starts, where a failed cache read would
// only be a warning. Entries are pushed from st.
func ParseRegistry(flag, s string, write bool, rc *registry.Client, st *store.Store) (*Registry, error) {
	repo, ignoreErr, err := parseSpec(flag, s)
	if err != nil {
		return nil, err
	}
	ref, err := rc.ParseReference(repo)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, s, err)
	}
	if hasTagOrDigest(repo) {
		return nil, fmt.Errorf("%s %s: want a repository (the cache's tags are its keys), not a tag or digest", flag, s)
	}
	probe := ref.Context().Tag("latest")
	if pol := rc.Options().Policy; write {
		err = pol.CheckWrite(probe)
	} else {
		_, err = pol.CheckRead(probe)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, ref.Context(), err)
	}
	return &Registry{repo: ref.Context(), rc: rc, st: st, ignoreErr: ignoreErr}, nil
}

// parseSpec returns the repository of a cache flag's value and
// whether export errors are to be ignored (buildx's ignore-error; kiln's
// plain form has always only warned).
func parseSpec(flag, s string) (repo string, ignoreErr bool, err error) {
	first, _, _ := strings.Cut(s, ",")
	if !strings.Contains(first, "=") {
		if strings.Contains(s, ",") {
			return "", false, fmt.Errorf("%s %q: want a repository or type=registry,ref=REPO", flag, s)
		}
		return s, true, nil
	}
	fields, err := csvvalue.Fields(s, nil)
	if err != nil {
		return "", false, fmt.Errorf("%s %q: %w", flag, s, err)
	}
	kvs := make([][2]string, 0, len(fields))
	typ := ""
	for _, kv := range fields {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return "", false, fmt.Errorf("%s %q: %q is not KEY=VALUE", flag, s, kv)
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if k == "type" {
			typ = v
		}
		kvs = append(kvs, [2]string{k, v})
	}
	switch typ {
	case "registry":
	case "":
		return "", false, fmt.Errorf("%s %q: missing type=registry", flag, s)
	default:
		return "", false, fmt.Errorf("%s %q: cache type %q is not supported: kiln's step cache lives in a registry (type=registry,ref=REPO)", flag, s, typ)
	}
	for _, kv := range kvs {
		k, v := kv[0], kv[1]
		switch k {
		case "type":
		case "ref":
			repo = v
		case "mode":
			// kiln exports every step the build used or made (buildx's
			// mode=max); mode=min is accepted and exports the same.
			if v != "min" && v != "max" {
				return "", false, fmt.Errorf("%s %q: mode must be min or max", flag, s)
			}
		case "ignore-error":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return "", false, fmt.Errorf("%s %q: ignore-error: want true or false", flag, s)
			}
			ignoreErr = b
		case "image-manifest", "oci-mediatypes":
			// kiln's entries are always OCI image manifests.
			if b, err := strconv.ParseBool(v); err != nil || !b {
				return "", false, fmt.Errorf("%s %q: %s=%s is not supported (kiln's cache entries are OCI image manifests)", flag, s, k, v)
			}
		default:
			return "", false, fmt.Errorf("%s %q: unknown key %q (kiln knows type, ref, mode, ignore-error, image-manifest, oci-mediatypes)", flag, s, k)
		}
	}
	if repo == "" {
		return "", false, fmt.Errorf("%s %q: missing ref=REPO", flag, s)
	}
	return repo, ignoreErr, nil
}

// hasTagOrDigest reports whether a reference names a tag or digest (a
// colon after the last slash, or an @; a registry's port comes before the
// first slash).
func hasTagOrDigest(s string) bool {
	return strings.Contains(s, "@") || strings.Contains(s[strings.LastIndexByte(s, '/')+1:], ":")
}

func (r *Registry) Name() string { return r.repo.Name() }

func (r *Registry) Manifest(ctx context.Context, tag string) ([]byte, error) {
	d, err := r.rc.Fetch(ctx, r.repo.Tag(tag))
	if errors.Is(err, registry.ErrManifestUnknown) || errors.Is(err, registry.ErrNameUnknown) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return d.Manifest, nil
}

func (r *Registry) Blob(ctx context.Context, h v1.Hash) (io.ReadCloser, error) {
	return r.rc.OpenBlob(ctx, r.repo.Name(), h)
}

func (r *Registry) Push(ctx context.Context, tag string, d v1.Descriptor) error {
	_, err := r.rc.PushStored(ctx, r.st, d, []name.Reference{r.repo.Tag(tag)})
	return err
}

// Strict reports whether a failed export to r must fail the build
// (buildx's form without ignore-error=true); else it is a warning.
func (r *Registry) Strict() bool { return !r.ignoreErr }
