package attest

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// InTotoMediaType is the media type of buildx's attestation layers.
const InTotoMediaType types.MediaType = "application/vnd.in-toto+json"

// The annotations and types of buildx's attestations.
const (
	PredicateTypeAnnot      = "in-toto.io/predicate-type"
	RefTypeAnnotation       = "vnd.docker.reference.type"
	RefDigestAnnotation     = "vnd.docker.reference.digest"
	AttestationManifest     = "attestation-manifest"
	StatementType           = "https://in-toto.io/Statement/v0.1"
	SPDXPredicateType       = "https://spdx.dev/Document"
	SLSAProvenancePredicate = "https://slsa.dev/provenance/v0.2"
	// AttestationArtifactType is the artifactType of buildx's attestation
	// manifests with oci-artifact=true.
	AttestationArtifactType = "application/vnd.docker.attestation.manifest.v1+json"
)

// Statement is an in-toto statement.
type Statement struct {
	Type          string    `json:"_type"`
	PredicateType string    `json:"predicateType"`
	Subject       []Subject `json:"subject"`
	Predicate     any       `json:"predicate"`
}

// Subject is what a statement is about.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// NewStatement makes the statement of predicate about the image digest
// (named as buildx names it: pkg:docker/NAME@TAG?platform=…).
func NewStatement(predicateType string, predicate any, imageName string, digest v1.Hash, platform *v1.Platform) Statement {
	return Statement{Type: StatementType, PredicateType: predicateType, Predicate: predicate,
		Subject: []Subject{{Name: subjectName(imageName, platform), Digest: map[string]string{digest.Algorithm: digest.Hex}}}}
}

func subjectName(imageName string, p *v1.Platform) string {
	n := "pkg:docker/image"
	if r, err := name.ParseReference(imageName); err == nil && imageName != "" {
		n = "pkg:docker/" + r.Context().Name()
		if t, ok := r.(name.Tag); ok {
			n += "@" + t.TagStr()
		}
	}
	if p != nil {
		n += "?platform=" + esc(p.OS+"/"+p.Architecture+strings.TrimSuffix("/"+p.Variant, "/"))
	}
	return n
}

// manifest is the attestation manifest of statements about subject.
func manifest(statements []Statement) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	var adds []mutate.Addendum
	for _, s := range statements {
		b, err := json.Marshal(s)
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.Addendum{Layer: static.NewLayer(b, InTotoMediaType), MediaType: InTotoMediaType,
			Annotations: map[string]string{PredicateTypeAnnot: s.PredicateType}})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "unknown", "unknown"
	return mutate.ConfigFile(img, cf)
}

// Child is an image of the result with its statements.
type Child struct {
	Image      v1.Image
	Platform   *v1.Platform
	Statements []Statement
}

// Attach makes the image index buildx pushes: each image, followed by its
// attestation manifest (platform unknown/unknown, annotated with the
// image's digest and vnd.docker.reference.type attestation-manifest).
// annotations, when set, are the index's own. With ociArtifact (buildx's
// oci-artifact=true) each attestation manifest is also an OCI 1.1
// artifact: artifactType AttestationArtifactType, the empty config, and the
// image as its subject, so that the registry's referrers API (or the
// referrers tag a push keeps) lists it under the image.
func Attach(children []Child, annotations map[string]string, ociArtifact bool) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, c := range children {
		d, err := c.Image.Digest()
		if err != nil {
			return nil, err
		}
		mt, err := c.Image.MediaType()
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: c.Image, Descriptor: v1.Descriptor{MediaType: mt, Platform: c.Platform}})
		if len(c.Statements) == 0 {
			continue
		}
		var att v1.Image
		if ociArtifact {
			att, err = artifactManifest(c.Statements, v1.Descriptor{MediaType: mt, Digest: d, Size: size(c.Image)})
		} else {
			att, err = manifest(c.Statements)
		}
		if err != nil {
			return nil, fmt.Errorf("attestation manifest: %w", err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{
			MediaType: types.OCIManifestSchema1,
			Platform:  &v1.Platform{OS: "unknown", Architecture: "unknown"},
			Annotations: map[string]string{
				RefDigestAnnotation: d.String(),
				RefTypeAnnotation:   AttestationManifest,
			}}})
	}
	if len(annotations) > 0 {
		idx = mutate.Annotations(idx, annotations).(v1.ImageIndex)
	}
	return idx, nil
}
