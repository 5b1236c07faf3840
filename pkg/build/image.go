package build

import (
	"bytes"
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Format selects the manifest and config media types of the output.
type Format string

const (
	// FormatOCI writes OCI image manifests, configs and indexes.
	FormatOCI Format = "oci"
	// FormatDocker writes Docker schema 2 manifests and manifest lists.
	FormatDocker Format = "docker"
)

// ParseFormat parses --format.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "", "oci":
		return FormatOCI, nil
	case "docker", "v2s2":
		return FormatDocker, nil
	}
	return "", fmt.Errorf("unknown image format %q (want oci or docker)", s)
}

func (f Format) manifestType() types.MediaType {
	if f == FormatDocker {
		return types.DockerManifestSchema2
	}
	return types.OCIManifestSchema1
}

func (f Format) configType() types.MediaType {
	if f == FormatDocker {
		return types.DockerConfigJSON
	}
	return types.OCIConfigJSON
}

func (f Format) indexType() types.MediaType {
	if f == FormatDocker {
		return types.DockerManifestList
	}
	return types.OCIImageIndex
}

// layerType maps a layer's media type to the output format's equivalent:
// the blob stays the same, only its label changes.
func (f Format) layerType(mt types.MediaType) types.MediaType {
	oci := f == FormatOCI
	switch mt {
	case types.DockerLayer, types.OCILayer:
		if oci {
			return types.OCILayer
		}
		return types.DockerLayer
	case types.DockerUncompressedLayer, types.OCIUncompressedLayer:
		if oci {
			return types.OCIUncompressedLayer
		}
		return types.DockerUncompressedLayer
	case types.DockerForeignLayer, types.OCIRestrictedLayer:
		if oci {
			return types.OCIRestrictedLayer
		}
		return types.DockerForeignLayer
	}
	return mt
}

// assembled is an image made of a config and a list of layers whose
// descriptors are known without reading them: base layers stay lazy.
type assembled struct {
	manifest  []byte
	config    []byte
	mediaType types.MediaType
	layers    map[v1.Hash]v1.Layer
}

// assemble serialises cfg and a manifest over layers. cfg.RootFS must
// already list the layers' diff IDs.
func assemble(cfg *v1.ConfigFile, layers []v1.Layer, format Format, annotations map[string]string) (v1.Image, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     format.manifestType(),
		Config: v1.Descriptor{
			MediaType: format.configType(),
			Size:      int64(len(raw)),
			Digest:    sha256Hash(raw),
		},
		Annotations: annotations,
	}
	a := &assembled{config: raw, mediaType: format.manifestType(), layers: map[v1.Hash]v1.Layer{}}
	for i, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		size, err := l.Size()
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		mt, err := l.MediaType()
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: format.layerType(mt), Size: size, Digest: d})
		a.layers[d] = l
	}
	if format == FormatDocker {
		m.Annotations = nil
	}
	if a.manifest, err = json.Marshal(m); err != nil {
		return nil, err
	}
	return partial.CompressedToImage(a)
}

func (a *assembled) RawConfigFile() ([]byte, error)      { return a.config, nil }
func (a *assembled) MediaType() (types.MediaType, error) { return a.mediaType, nil }
func (a *assembled) RawManifest() ([]byte, error)        { return a.manifest, nil }

func (a *assembled) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := a.layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("image has no layer %s", h)
}

// index is an image index over already assembled images.
type index struct {
	manifest  []byte
	mediaType types.MediaType
	images    map[v1.Hash]v1.Image
}

func newIndex(images []v1.Image, platforms []v1.Platform, format Format) (*index, error) {
	m := v1.IndexManifest{SchemaVersion: 2, MediaType: format.indexType()}
	ix := &index{mediaType: format.indexType(), images: map[v1.Hash]v1.Image{}}
	for i, img := range images {
		d, err := partial.Descriptor(img)
		if err != nil {
			return nil, err
		}
		// The index says what the image's config says (a base may have no
		// variant where --platform gave one).
		p := platforms[i]
		if cfg, err := img.ConfigFile(); err == nil && cfg.Platform() != nil {
			p = *cfg.Platform()
		}
		d.Platform = &p
		m.Manifests = append(m.Manifests, *d)
		ix.images[d.Digest] = img
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	ix.manifest = raw
	return ix, nil
}

func (ix *index) MediaType() (types.MediaType, error) { return ix.mediaType, nil }
func (ix *index) Digest() (v1.Hash, error)            { return sha256Hash(ix.manifest), nil }
func (ix *index) Size() (int64, error)                { return int64(len(ix.manifest)), nil }
func (ix *index) RawManifest() ([]byte, error)        { return ix.manifest, nil }
func (ix *index) IndexManifest() (*v1.IndexManifest, error) {
	var m v1.IndexManifest
	err := json.Unmarshal(ix.manifest, &m)
	return &m, err
}
func (ix *index) Image(h v1.Hash) (v1.Image, error) {
	if img, ok := ix.images[h]; ok {
		return img, nil
	}
	return nil, fmt.Errorf("index has no image %s", h)
}
func (ix *index) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	return nil, fmt.Errorf("index has no child index %s", h)
}

func sha256Hash(b []byte) v1.Hash {
	h, _, _ := v1.SHA256(bytes.NewReader(b))
	return h
}
