package attest

import (
	"bytes"
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// emptyConfig is the OCI empty descriptor's content ({}).
var emptyConfig = []byte("{}")

// artifactManifest is the attestation manifest of statements as an OCI
// 1.1 artifact about subject (BuildKit's oci-artifact=true shape).
func artifactManifest(statements []Statement, subject v1.Descriptor) (v1.Image, error) {
	a := &artifact{layers: map[v1.Hash]partial.CompressedLayer{}}
	cfg := static.NewLayer(emptyConfig, types.MediaType("application/vnd.oci.empty.v1+json"))
	cd, err := cfg.Digest()
	if err != nil {
		return nil, err
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: AttestationArtifactType,
		Config:  v1.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: cd, Size: int64(len(emptyConfig))},
		Subject: &subject, Layers: []v1.Descriptor{}}
	for _, s := range statements {
		b, err := json.Marshal(s)
		if err != nil {
			return nil, err
		}
		l := static.NewLayer(b, InTotoMediaType)
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		a.layers[d] = l
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: InTotoMediaType, Digest: d, Size: int64(len(b)),
			Annotations: map[string]string{PredicateTypeAnnot: s.PredicateType}})
	}
	if a.raw, err = json.Marshal(m); err != nil {
		return nil, err
	}
	return partial.CompressedToImage(a)
}

// artifact is a manifest kiln wrote itself, with its blobs.
type artifact struct {
	raw    []byte
	layers map[v1.Hash]partial.CompressedLayer
}

func (a *artifact) RawConfigFile() ([]byte, error)      { return emptyConfig, nil }
func (a *artifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (a *artifact) RawManifest() ([]byte, error)        { return a.raw, nil }

func (a *artifact) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := a.layers[h]; ok {
		return l, nil
	}
	m, err := v1.ParseManifest(bytes.NewReader(a.raw))
	if err == nil && m.Config.Digest == h {
		return static.NewLayer(emptyConfig, m.Config.MediaType), nil
	}
	return nil, fmt.Errorf("attestation manifest has no blob %s", h)
}

// size is the size of img's manifest (0 when it cannot be read, which
// Digest would have failed on first).
func size(img v1.Image) int64 {
	n, err := img.Size()
	if err != nil {
		return 0
	}
	return n
}
