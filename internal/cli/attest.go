package cli

import (
	"fmt"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/attest"
	"github.com/kiln-build/kiln/pkg/build"
	"github.com/kiln-build/kiln/pkg/oci"
)

// attestInputs is what the attestations of a build are made of.
type attestInputs struct {
	dockerfileName string
	dockerfile     []byte
	buildArgs      map[string]string
	labels         map[string]string
	secrets        map[string]build.Secret
	tags           []string
	timestamp      *time.Time
	started        time.Time
	// ociArtifact: attestation manifests as OCI 1.1 artifacts
	// (--output ...,oci-artifact=true).
	ociArtifact bool
}

// attach replaces res's image (or index) by an index that also holds the
// SBOM and provenance --sbom, --provenance and --attest ask for, as buildx
// attaches them.
func (f *buildFlags) attach(res *build.Result, in attestInputs) error {
	req := f.attestReq
	if !req.Any() {
		return nil
	}
	children, annotations, err := attestChildren(res.Artifact)
	if err != nil {
		return err
	}
	name := ""
	if len(in.tags) > 0 {
		name = in.tags[0]
	}
	created, finished := time.Now(), time.Now()
	started := in.started
	if in.timestamp != nil {
		created, started, finished = *in.timestamp, *in.timestamp, *in.timestamp
	}
	var base *attest.Base
	var mats []build.Material
	for _, m := range res.Materials {
		mats = append(mats, m)
		if m.Base && base == nil {
			base = &attest.Base{Ref: m.Ref, Digest: m.Digest}
		}
	}
	secretValues := secretValues(in.secrets)
	for i, c := range children {
		d, err := c.Image.Digest()
		if err != nil {
			return err
		}
		if req.SBOM {
			doc, err := attest.SBOM(c.Image, attest.SBOMOptions{Name: name, Base: base, Created: created, Tool: "kiln-" + versionInfo().Version})
			if err != nil {
				return fmt.Errorf("--sbom: %w", err)
			}
			children[i].Statements = append(children[i].Statements, attest.NewStatement(attest.SPDXPredicateType, doc, name, d, c.Platform))
		}
		if req.Provenance {
			var ms []attest.Material
			for _, m := range mats {
				ms = append(ms, attest.MaterialOf(m.Ref, m.Digest, c.Platform))
			}
			pred := attest.Provenance(attest.ProvenanceOptions{Max: req.ProvenanceMax, BuilderID: attest.BuilderID(versionInfo().Version),
				DockerfileName: in.dockerfileName, Dockerfile: in.dockerfile, BuildArgs: in.buildArgs, Labels: in.labels,
				Target: f.target, Secrets: secretValues, Materials: ms, ConfigSource: f.gitSource, Platform: c.Platform, Started: started, Finished: finished})
			children[i].Statements = append(children[i].Statements, attest.NewStatement(attest.SLSAProvenancePredicate, pred, name, d, c.Platform))
		}
	}
	idx, err := attest.Attach(children, annotations, in.ociArtifact)
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
// variables), which provenance must never hold.
func secretValues(secrets map[string]build.Secret) []string {
	var out []string
	for _, s := range secrets {
		var v []byte
		if s.File != "" {
			v, _ = os.ReadFile(s.File)
		} else if s.Env != "" {
			v = []byte(os.Getenv(s.Env))
		}
		if len(v) > 0 {
			out = append(out, string(v))
		}
	}
	return out
}
