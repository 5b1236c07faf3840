package registry

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// CosignSignatureArtifactType is the artifact type of cosign's signatures
// in the OCI 1.1 referrers form.
const CosignSignatureArtifactType = "application/vnd.dev.cosign.artifact.sig.v1+json"

// AttachedOptions says what CopyAttached carries.
type AttachedOptions struct {
	// NoSignatures leaves out signatures: cosign's .sig tags and
	// signature referrers (skopeo's --remove-signatures).
	NoSignatures bool
	// NoTags leaves out cosign's tags (sha256-<hex>.sig, .att, .sbom):
	// --all-tags copies them as tags already.
	NoTags bool
}

// Attached is one thing CopyAttached copied.
type Attached struct {
	// Kind is "signature", "attestation", "sbom" or "referrer".
	Kind       string
	Src, Dst   name.Reference
	Descriptor v1.Descriptor
}

// cosignSuffixes are cosign's attachment tags and what they hold.
var cosignSuffixes = []struct{ suffix, kind string }{
	{".sig", "signature"}, {".att", "attestation"}, {".sbom", "sbom"},
}

// attachmentTag matches cosign's attachment tags and the referrers tag.
var attachmentTag = regexp.MustCompile(`^sha256-[0-9a-f]{64}(\.sig|\.att|\.sbom)?$`)

// IsAttachmentTag reports whether tag is one of cosign's attachment tags
// (sha256-<hex>.sig, .att, .sbom) or a referrers tag (sha256-<hex>), and
// whether it holds signatures (.sig).
func IsAttachmentTag(tag string) (attachment, signature bool) {
	m := attachmentTag.FindStringSubmatch(tag)
	if m == nil {
		return false, false
	}
	return true, m[1] == ".sig"
}

// maxReferrerDepth bounds how deep referrers of referrers are followed.
const maxReferrerDepth = 3

// CopyAttached copies what is attached to the manifest digest of src (and
// to each manifest of it, when it is an index) to dst, where the same
// digests are (Copy keeps them): cosign's sha256-<hex>.sig, .att and .sbom
// tags, and OCI 1.1 referrers (from the referrers API or the referrers
// tag; referrers of referrers too), which the destination then lists as
// Write links them. Missing attachments are not errors. Signature
// requirements of the policy are not checked again (the image they are
// attached to was); writing to dst must be allowed.
func (c *Client) CopyAttached(ctx context.Context, src, dst name.Repository, digest v1.Hash, ao AttachedOptions, each func(Attached)) error {
	ctx = orBackground(ctx)
	if err := c.o.allowWrite([]name.Reference{dst.Digest(digest.String())}); err != nil {
		return err
	}
	if _, err := c.o.Policy.CheckRead(src.Digest(digest.String())); err != nil {
		return err
	}
	plain := c.WithoutPolicy()
	subjects, err := plain.manifestsOf(ctx, src, digest)
	if err != nil {
		return err
	}
	seen := map[v1.Hash]bool{}
	var errs []error
	for _, s := range subjects {
		if err := plain.copyAttachedTo(ctx, src, dst, s, ao, each, seen, 0); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// manifestsOf is digest and, for an index, the digests of its manifests.
func (c *Client) manifestsOf(ctx context.Context, repo name.Repository, digest v1.Hash) ([]v1.Hash, error) {
	d, err := c.Fetch(ctx, repo.Digest(digest.String()))
	if err != nil {
		return nil, err
	}
	out := []v1.Hash{digest}
	if !d.MediaType.IsIndex() {
		return out, nil
	}
	var im v1.IndexManifest
	if err := json.Unmarshal(d.Manifest, &im); err != nil {
		return nil, err
	}
	for _, m := range im.Manifests {
		out = append(out, m.Digest)
	}
	return out, nil
}

func (c *Client) copyAttachedTo(ctx context.Context, src, dst name.Repository, s v1.Hash, ao AttachedOptions, each func(Attached), seen map[v1.Hash]bool, depth int) error {
	if seen[s] || depth > maxReferrerDepth {
		return nil
	}
	seen[s] = true
	var errs []error
	if !ao.NoTags {
		for _, cs := range cosignSuffixes {
			if ao.NoSignatures && cs.kind == "signature" {
				continue
			}
			t := s.Algorithm + "-" + s.Hex + cs.suffix
			from, to := src.Tag(t), dst.Tag(t)
			desc, err := c.Copy(ctx, from, []name.Reference{to})
			if errors.Is(err, ErrManifestUnknown) || errors.Is(err, ErrNameUnknown) {
				continue
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if each != nil {
				each(Attached{Kind: cs.kind, Src: from, Dst: to, Descriptor: desc})
			}
		}
	}
	refs, err := c.Referrers(ctx, src, s, "")
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, r := range refs {
		if ao.NoSignatures && r.ArtifactType == CosignSignatureArtifactType {
			continue
		}
		from, to := src.Digest(r.Digest.String()), dst.Digest(r.Digest.String())
		desc, err := c.Copy(ctx, from, []name.Reference{to})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if each != nil {
			kind := "referrer"
			if r.ArtifactType == CosignSignatureArtifactType {
				kind = "signature"
			}
			each(Attached{Kind: kind, Src: from, Dst: to, Descriptor: desc})
		}
		if err := c.copyAttachedTo(ctx, src, dst, r.Digest, ao, each, seen, depth+1); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
