package build

import (
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/attest"
	"github.com/kiln-build/kiln/pkg/oci"
)

// AttestOptions is what Attest needs besides the build's Options.
type AttestOptions struct {
	// Request is what --sbom, --provenance and --attest ask for.
	Request attest.Request
	// Name is the image's first name: the SBOM's name and the statements'
	// subject name ("" for none).
	Name string
	// DockerfileName is the Dockerfile as the frontend names it
	// (provenance's entry point).
	DockerfileName string
	// Version is kiln's version: the SBOM's tool and provenance's builder.
	Version string
	// ConfigSource is the git context the build read, if any.
	ConfigSource *attest.Material
	// Started is when the build started (provenance's buildStartedOn; the
	// build's Timestamp instead, when set).
	Started time.Time
	// OCIArtifact writes the attestation manifests as OCI 1.1 artifacts
	// (--output ...,oci-artifact=true).
	OCIArtifact bool
}

// Attest replaces res's image (or index) by an index that also holds the
// SBOM and provenance a.Request asks for, one attestation manifest per
// image, as buildx attaches them. o is the build's Options: provenance
// records its Dockerfile, build arguments, labels and target, and never
// the values of its secrets.
func Attest(res *Result, o Options, a AttestOptions) error {
	req := a.Request
	if !req.Any() {
		return nil
	}
	children, annotations, err := attestChildren(res.Artifact)
	if err != nil {
		return err
	}
	created, finished := time.Now(), time.Now()
	started := a.Started
	if o.Timestamp != nil {
		created, started, finished = *o.Timestamp, *o.Timestamp, *o.Timestamp
	}
	var base *attest.Base
	for _, m := range res.Materials {
		if m.Base {
			base = &attest.Base{Ref: m.Ref, Digest: m.Digest}
			break
		}
	}
	secrets := secretValues(o.Secrets)
	for i, c := range children {
		d, err := c.Image.Digest()
		if err != nil {
			return err
		}
		if req.SBOM {
			doc, err := attest.SBOM(c.Image, attest.SBOMOptions{Name: a.Name, Base: base, Created: created, Tool: "kiln-" + a.Version})
			if err != nil {
				return fmt.Errorf("--sbom: %w", err)
			}
			children[i].Statements = append(children[i].Statements, attest.NewStatement(attest.SPDXPredicateType, doc, a.Name, d, c.Platform))
		}
		if req.Provenance {
			var ms []attest.Material
			for _, m := range res.Materials {
				ms = append(ms, attest.MaterialOf(m.Ref, m.Digest, c.Platform))
			}
			pred := attest.Provenance(attest.ProvenanceOptions{Max: req.ProvenanceMax, BuilderID: attest.BuilderID(a.Version),
				DockerfileName: a.DockerfileName, Dockerfile: o.Dockerfile, BuildArgs: o.BuildArgs, Labels: o.Labels,
				Target: o.Target, Secrets: secrets, Materials: ms, ConfigSource: a.ConfigSource, Platform: c.Platform, Started: started, Finished: finished})
			children[i].Statements = append(children[i].Statements, attest.NewStatement(attest.SLSAProvenancePredicate, pred, a.Name, d, c.Platform))
		}
	}
	idx, err := attest.Attach(children, annotations, a.OCIArtifact)
	if err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	res.Artifact, res.Digest = idx, d
	return nil
}

// attestChildren lists the images of a build's result to attest, with
// their platforms, and the annotations of its index (none for an image).
func attestChildren(a oci.Artifact) ([]attest.Child, map[string]string, error) {
	if img, ok := oci.AsImage(a); ok {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, nil, err
		}
		return []attest.Child{{Image: img, Platform: &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}}}, nil, nil
	}
	idx, ok := oci.AsIndex(a)
	if !ok {
		return nil, nil, oci.ErrNotImageOrIndex
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, nil, err
	}
	var children []attest.Child
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, nil, err
		}
		children = append(children, attest.Child{Image: img, Platform: d.Platform})
	}
	return children, im.Annotations, nil
}

// secretValues are the contents of the build's secrets (files and
// variables), which provenance must never hold; one that cannot be read
// holds nothing to leave out.
func secretValues(secrets map[string]Secret) []string {
	var out []string
	for _, s := range secrets {
		if v, err := s.value(); err == nil && len(v) > 0 {
			out = append(out, string(v))
		}
	}
	return out
}
