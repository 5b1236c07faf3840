package sign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/pkg/registry"
)

// SimpleSigningMediaType is cosign's media type of its payloads.
const SimpleSigningMediaType types.MediaType = "application/vnd.dev.cosign.simplesigning.v1+json"

// cosign's annotation of a signature and its payload type.
const (
	SignatureAnnotation = "dev.cosignproject.cosign/signature"
	PayloadType         = "cosign container image signature"
)

// SignatureArtifactType is the config media type (so the artifact type)
// of cosign's signatures in the OCI 1.1 referrers form (cosign sign
// --registry-referrers-mode=oci-1-1).
const SignatureArtifactType types.MediaType = registry.CosignSignatureArtifactType

// Mode is where signatures go: cosign's sha256-<hex>.sig tag (Legacy) or
// an OCI 1.1 referrer of the image (Referrers).
type Mode int

const (
	Legacy Mode = iota
	Referrers
)

// ParseMode reads cosign's --registry-referrers-mode values: legacy or
// oci-1-1.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "legacy":
		return Legacy, nil
	case "oci-1-1":
		return Referrers, nil
	}
	return Legacy, fmt.Errorf("%q: want legacy (the sha256-<digest>.sig tag) or oci-1-1 (an OCI 1.1 referrer)", s)
}

// maxPayload bounds a signature payload read from a registry.
const maxPayload = 1 << 20

// Payload is the simple-signing payload cosign signs.
type Payload struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
	Optional map[string]any `json:"optional"`
}

// NewPayload is the payload that signs digest as identity (cosign writes
// the repository, without tag).
func NewPayload(identity string, digest v1.Hash, annotations map[string]any) ([]byte, error) {
	var p Payload
	p.Critical.Identity.DockerReference = identity
	p.Critical.Image.DockerManifestDigest = digest.String()
	p.Critical.Type = PayloadType
	if len(annotations) > 0 {
		p.Optional = annotations
	}
	return json.Marshal(p)
}

// SignatureTag is where cosign keeps the signatures of digest in repo.
func SignatureTag(repo name.Repository, digest v1.Hash) name.Tag {
	return repo.Tag(digest.Algorithm + "-" + digest.Hex + ".sig")
}

// Sign signs the manifest subject describes, as repo names it, with key.
// In Legacy mode the signature is added to those at repo's
// sha256-<hex>.sig tag; in Referrers mode it is pushed as a manifest of its
// own whose subject is the image (cosign's OCI 1.1 form), found through
// the registry's referrers API or the referrers tag. c's policy decides
// whether it may be written. It returns where the signature went.
func Sign(ctx context.Context, repo name.Repository, subject v1.Descriptor, key crypto.Signer, annotations map[string]any, mode Mode, c *registry.Client) (name.Reference, error) {
	digest := subject.Digest
	var ref name.Reference = SignatureTag(repo, digest)
	payload, err := NewPayload(repo.Name(), digest, annotations)
	if err != nil {
		return ref, err
	}
	sum := sha256.Sum256(payload)
	sig, err := key.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		return ref, fmt.Errorf("signing: %w", err)
	}
	base := emptySignatures()
	if mode == Legacy {
		if base, err = existing(ctx, ref.(name.Tag), c); err != nil {
			return ref, err
		}
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:       static.NewLayer(payload, SimpleSigningMediaType),
		Annotations: map[string]string{SignatureAnnotation: base64.StdEncoding.EncodeToString(sig)},
		MediaType:   SimpleSigningMediaType,
	})
	if err != nil {
		return ref, err
	}
	if mode == Referrers {
		img = mutate.ConfigMediaType(img, SignatureArtifactType)
		img = mutate.Subject(img, v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}).(v1.Image)
		d, err := img.Digest()
		if err != nil {
			return ref, err
		}
		ref = repo.Digest(d.String())
	}
	if _, err := c.Write(ctx, img, []name.Reference{ref}); err != nil {
		return ref, fmt.Errorf("pushing the signature %s: %w", ref, err)
	}
	return ref, nil
}

// emptySignatures is a signature image without signatures (OCI manifest
// and config, as cosign makes).
func emptySignatures() v1.Image {
	return mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
}

// existing is the signature image at tag, or an empty one (OCI manifest
// and config, as cosign makes) when there is none.
func existing(ctx context.Context, tag name.Tag, c *registry.Client) (v1.Image, error) {
	d, err := c.WithoutPolicy().Fetch(ctx, tag)
	if errors.Is(err, registry.ErrManifestUnknown) || errors.Is(err, registry.ErrNameUnknown) {
		return emptySignatures(), nil
	}
	if err != nil {
		return nil, err
	}
	if !d.MediaType.IsImage() {
		return nil, fmt.Errorf("%s is a %s, not cosign's signature image", tag, d.MediaType)
	}
	return d.Image()
}

// Verified is a signature that verified.
type Verified struct {
	Payload []byte
	Parsed  Payload
}

// Verify reads the signatures of digest from repository from, in both of
// cosign's forms (the sha256-<hex>.sig tag and OCI 1.1 referrers of type
// SignatureArtifactType), and returns those that a key verifies, whose
// payload names digest and whose identity match accepts (nil: any
// identity). No verified signature is an error saying why each failed.
func Verify(ctx context.Context, from name.Repository, digest v1.Hash, keys []crypto.PublicKey, match func(identity string) error, c *registry.Client) ([]Verified, error) {
	tag := SignatureTag(from, digest)
	plain := c.WithoutPolicy()
	var out []Verified
	var why []string
	found := 0
	check := func(where string, ref name.Reference) {
		vs, n, err := verifyImage(ctx, ref, digest, keys, match, plain)
		found += n
		out = append(out, vs...)
		if err != nil {
			why = append(why, where+": "+err.Error())
		}
	}
	d, err := plain.Fetch(ctx, tag)
	switch {
	case errors.Is(err, registry.ErrManifestUnknown) || errors.Is(err, registry.ErrNameUnknown):
	case err != nil:
		why = append(why, err.Error())
	default:
		check(tag.String(), tag.Digest(d.Digest.String()))
	}
	refs, err := plain.Referrers(ctx, from, digest, string(SignatureArtifactType))
	if err != nil {
		why = append(why, err.Error())
	}
	for _, r := range refs {
		check("referrer "+r.Digest.String(), from.Digest(r.Digest.String()))
	}
	if len(out) > 0 {
		return out, nil
	}
	if found == 0 && len(why) == 0 {
		return nil, fmt.Errorf("no signatures: neither %s nor a referrer of type %s exists", tag, SignatureArtifactType)
	}
	if len(why) == 0 {
		why = []string{"the signature images have no layers"}
	}
	return nil, fmt.Errorf("no valid signature of %s: %s", from.Digest(digest.String()), strings.Join(why, "; "))
}

// verifyImage checks each signature layer of the signature image ref; n
// counts its layers.
func verifyImage(ctx context.Context, ref name.Reference, digest v1.Hash, keys []crypto.PublicKey, match func(string) error, c *registry.Client) (out []Verified, n int, err error) {
	d, err := c.Fetch(ctx, ref)
	if err != nil {
		return nil, 0, err
	}
	img, err := d.Image()
	if err != nil {
		return nil, 0, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, 0, err
	}
	var why []string
	for i, l := range m.Layers {
		v, err := verifyLayer(img, l, digest, keys, match)
		if err != nil {
			why = append(why, fmt.Sprintf("signature %d: %v", i+1, err))
			continue
		}
		out = append(out, *v)
	}
	if len(out) == 0 && len(why) > 0 {
		return nil, len(m.Layers), errors.New(strings.Join(why, "; "))
	}
	return out, len(m.Layers), nil
}

func verifyLayer(img v1.Image, l v1.Descriptor, digest v1.Hash, keys []crypto.PublicKey, match func(string) error) (*Verified, error) {
	if l.MediaType != SimpleSigningMediaType {
		return nil, fmt.Errorf("media type %s is not %s", l.MediaType, SimpleSigningMediaType)
	}
	sig, err := base64.StdEncoding.DecodeString(l.Annotations[SignatureAnnotation])
	if err != nil || len(sig) == 0 {
		return nil, fmt.Errorf("no base64 %s annotation", SignatureAnnotation)
	}
	if l.Size > maxPayload {
		return nil, fmt.Errorf("payload of %d bytes is larger than %d", l.Size, maxPayload)
	}
	layer, err := img.LayerByDigest(l.Digest)
	if err != nil {
		return nil, err
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, err
	}
	payload, err := io.ReadAll(io.LimitReader(rc, maxPayload+1))
	rc.Close()
	if err != nil {
		return nil, err
	}
	if h := sha256.Sum256(payload); fmt.Sprintf("sha256:%x", h) != l.Digest.String() {
		return nil, fmt.Errorf("payload does not match its digest %s", l.Digest)
	}
	sum := sha256.Sum256(payload)
	ok := false
	for _, k := range keys {
		if pk, isEC := k.(*ecdsa.PublicKey); isEC && ecdsa.VerifyASN1(pk, sum[:], sig) {
			ok = true
			break
		}
	}
	if !ok {
		return nil, errors.New("no given key verifies it")
	}
	var p Payload
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("payload is not simple-signing JSON: %v", err)
	}
	if p.Critical.Type != PayloadType {
		return nil, fmt.Errorf("payload type %q is not %q", p.Critical.Type, PayloadType)
	}
	if p.Critical.Image.DockerManifestDigest != digest.String() {
		return nil, fmt.Errorf("it signs %s, not %s", p.Critical.Image.DockerManifestDigest, digest)
	}
	if match != nil {
		if err := match(p.Critical.Identity.DockerReference); err != nil {
			return nil, err
		}
	}
	return &Verified{Payload: payload, Parsed: p}, nil
}
