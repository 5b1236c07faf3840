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

// cosign's media type, annotation and payload type.
const SimpleSigningMediaType types.MediaType = "application/vnd.dev.cosign.simplesigning.v1+json"

const (
	SignatureAnnotation = "dev.cosignproject.cosign/signature"
	PayloadType         = "cosign container image signature"
)

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

// Sign signs digest, as repo names it, with key, and adds the signature to
// those at repo's sha256-<hex>.sig tag (o's policy decides whether that
// may be written). It returns the tag written.
func Sign(ctx context.Context, repo name.Repository, digest v1.Hash, key crypto.Signer, annotations map[string]any, o registry.Options) (name.Tag, error) {
	tag := SignatureTag(repo, digest)
	payload, err := NewPayload(repo.Name(), digest, annotations)
	if err != nil {
		return tag, err
	}
	sum := sha256.Sum256(payload)
	sig, err := key.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		return tag, fmt.Errorf("signing: %w", err)
	}
	base, err := existing(ctx, tag, o)
	if err != nil {
		return tag, err
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:       static.NewLayer(payload, SimpleSigningMediaType),
		Annotations: map[string]string{SignatureAnnotation: base64.StdEncoding.EncodeToString(sig)},
		MediaType:   SimpleSigningMediaType,
	})
	if err != nil {
		return tag, err
	}
	if _, err := registry.Write(ctx, registry.Artifact{Image: img}, []name.Reference{tag}, o); err != nil {
		return tag, fmt.Errorf("pushing the signature %s: %w", tag, err)
	}
	return tag, nil
}

// existing is the signature image at tag, or an empty one (OCI manifest
// and config, as cosign makes) when there is none.
func existing(ctx context.Context, tag name.Tag, o registry.Options) (v1.Image, error) {
	plain := o
	plain.Policy = nil
	d, err := registry.Fetch(ctx, tag, plain)
	if errors.Is(err, registry.ErrManifestUnknown) || errors.Is(err, registry.ErrNameUnknown) {
		return mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON), nil
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

// Verify reads the signatures of digest from repository from and returns
// those that a key verifies, whose payload names digest and whose identity
// match accepts (nil: any identity). No verified signature is an error
// saying why each failed.
func Verify(ctx context.Context, from name.Repository, digest v1.Hash, keys []crypto.PublicKey, match func(identity string) error, o registry.Options) ([]Verified, error) {
	tag := SignatureTag(from, digest)
	plain := o
	plain.Policy = nil
	d, err := registry.Fetch(ctx, tag, plain)
	if errors.Is(err, registry.ErrManifestUnknown) || errors.Is(err, registry.ErrNameUnknown) {
		return nil, fmt.Errorf("no signatures: %s does not exist", tag)
	}
	if err != nil {
		return nil, err
	}
	img, err := d.Image()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tag, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tag, err)
	}
	var out []Verified
	var why []string
	for i, l := range m.Layers {
		v, err := verifyLayer(img, l, digest, keys, match)
		if err != nil {
			why = append(why, fmt.Sprintf("signature %d: %v", i+1, err))
			continue
		}
		out = append(out, *v)
	}
	if len(out) == 0 {
		if len(why) == 0 {
			why = []string{"the signature image has no layers"}
		}
		return nil, fmt.Errorf("no valid signature in %s: %s", tag, strings.Join(why, "; "))
	}
	return out, nil
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
