package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/pkg/progress"
)

// Copy copies what src names (an image, or an index with every image and
// artifact it lists) to every dst, registry to registry, keeping the
// manifests byte for byte (so digests do not change). Within one registry
// no blob byte passes through kiln: blobs are mounted from src's
// repository (or found present). Between registries each blob is
// streamed from src to dst, verified against its digest on the way, never
// stored. See Write for the order, parallelism and retries. A Docker Hub
// src is read from Options.Mirrors first.
func (c *Client) Copy(ctx context.Context, src name.Reference, dsts []name.Reference) (v1.Descriptor, error) {
	ctx = orBackground(ctx)
	if len(dsts) == 0 {
		return v1.Descriptor{}, errors.New("copy: no destination")
	}
	cands, reqs, err := c.o.readCands(src)
	if err != nil {
		return v1.Descriptor{}, err
	}
	if err := c.o.allowWrite(dsts); err != nil {
		return v1.Descriptor{}, err
	}
	var lastErr error
	for i, cand := range cands {
		top, err := c.registrySpec(ctx, cand, src.Context())
		if err == nil {
			err = c.verify(ctx, reqs, cand, top.digest)
		}
		if err != nil {
			lastErr = err
			if i < len(cands)-1 && ctx.Err() == nil {
				continue
			}
			return v1.Descriptor{}, err
		}
		return c.writeSpec(ctx, top, dsts, progress.OpCopy)
	}
	return v1.Descriptor{}, lastErr
}

// registrySpec reads the manifest ref names (from where ref points, a
// mirror perhaps) into a manifestSpec whose blobs and children are read from
// there too and whose blobs may be mounted from origin.
func (c *Client) registrySpec(ctx context.Context, ref name.Reference, origin name.Repository) (*manifestSpec, error) {
	puller, err := remote.NewPuller(c.RemoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	desc, err := puller.Get(ctx, ref)
	if err != nil {
		return nil, c.describeErr(ctx, ref.String(), ref.Context(), err)
	}
	return c.rawSpec(ctx, puller, ref.Context(), origin, desc.Manifest, desc.MediaType, ref.String())
}

// rawSpec describes the manifest raw of repository repo.
func (c *Client) rawSpec(ctx context.Context, puller *remote.Puller, repo, origin name.Repository, raw []byte, contentType types.MediaType, what string) (*manifestSpec, error) {
	mt, m, err := parseAnyManifest(raw, contentType)
	if err != nil {
		var re *Error
		if errors.As(err, &re) {
			re.msg = what + ": " + re.msg
			re.Registry = repo.RegistryStr()
			return nil, re
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	spec := &manifestSpec{raw: raw, mediaType: mt, digest: sha256Of(raw)}
	if mt.IsIndex() || (m.Config == nil && m.Manifests != nil) {
		for _, child := range m.Manifests {
			spec.children = append(spec.children, childSpec{desc: child, load: func(ctx context.Context) (*manifestSpec, error) {
				d := repo.Digest(child.Digest.String())
				cdesc, err := puller.Get(ctx, d)
				if err != nil {
					return nil, c.describeErr(ctx, d.String(), repo, err)
				}
				return c.rawSpec(ctx, puller, repo, origin, cdesc.Manifest, cdesc.MediaType, d.String())
			}})
		}
		return spec, nil
	}
	add := func(d v1.Descriptor, kind string) {
		if nonDistributable(d.MediaType) {
			return
		}
		spec.blobs = append(spec.blobs, &blobSpec{desc: d, kind: kind, sources: []name.Repository{origin},
			open: func(ctx context.Context) (io.ReadCloser, error) {
				ld := repo.Digest(d.Digest.String())
				l, err := puller.Layer(ctx, ld)
				if err != nil {
					return nil, c.describeErr(ctx, "blob "+ld.String(), repo, err)
				}
				rc, err := l.Compressed()
				if err != nil {
					return nil, c.describeErr(ctx, "blob "+ld.String(), repo, err)
				}
				return rc, nil
			}})
	}
	if m.Config != nil {
		add(*m.Config, progress.KindConfig)
	}
	for _, l := range m.Layers {
		add(l, progress.KindLayer)
	}
	for _, b := range m.Blobs {
		add(b, progress.KindBlob)
	}
	return spec, nil
}

// ListTags lists the tags of repo, sorted.
func (c *Client) ListTags(ctx context.Context, repo name.Repository) ([]string, error) {
	ctx = orBackground(ctx)
	if _, err := c.o.allowRead(repo.Tag("latest")); err != nil {
		return nil, err
	}
	tags, err := remote.List(repo, c.RemoteOptions(ctx)...)
	if err != nil {
		return nil, c.describeErr(ctx, "listing tags of "+repo.String(), repo, err)
	}
	sort.Strings(tags)
	return tags, nil
}

// TagCopy is the outcome of copying one tag in CopyAllTags.
type TagCopy struct {
	Src, Dst   name.Tag
	Descriptor v1.Descriptor
	Err        error
}

// CopyAllTags copies every tag of src to the same tag in dst, one tag after
// the other (each with Copy's parallel blobs), and reports each. The error
// joins the failed tags' errors. With ao, each image's OCI 1.1 referrers
// are carried too (CopyAttached; cosign's attachment tags are tags and
// copied as such), and ao.NoSignatures leaves out cosign's .sig tags and
// the referrers tags, whose lists the referrers copied rebuild.
func (c *Client) CopyAllTags(ctx context.Context, src, dst name.Repository, ao *AttachedOptions, each func(TagCopy)) error {
	if err := c.o.allowWrite([]name.Reference{dst.Tag("latest")}); err != nil {
		return err
	}
	tags, err := c.ListTags(ctx, src)
	if err != nil {
		return err
	}
	if len(tags) == 0 {
		return fmt.Errorf("copy: repository %s has no tags", src)
	}
	var errs []error
	for _, t := range tags {
		if err := ctx.Err(); err != nil {
			return err
		}
		attachment, _ := IsAttachmentTag(t)
		if attachment && ao != nil && ao.NoSignatures && !strings.HasSuffix(t, ".att") && !strings.HasSuffix(t, ".sbom") {
			continue
		}
		tc := TagCopy{Src: src.Tag(t), Dst: dst.Tag(t)}
		tc.Descriptor, tc.Err = c.Copy(ctx, tc.Src, []name.Reference{tc.Dst})
		if tc.Err == nil && ao != nil && !attachment {
			na := *ao
			na.NoTags = true
			tc.Err = c.CopyAttached(ctx, src, dst, tc.Descriptor.Digest, na, nil)
		}
		if tc.Err != nil {
			errs = append(errs, tc.Err)
		}
		if each != nil {
			each(tc)
		}
	}
	return errors.Join(errs...)
}
