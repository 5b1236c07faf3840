package harness

import (
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Platforms are the platforms of PlatformIndex, in index order.
var Platforms = []v1.Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "linux", Architecture: "arm64", Variant: "v8"},
}

// PlatformImage returns a small synthetic image for p: one layer with
// /etc/platform (the text "OS/ARCH[/VARIANT]\n") and the empty directory
// /opt/ARCH, a config with Env PLATFORM=OS/ARCH[/VARIANT], Cmd
// ["cat","/etc/platform"] and p's os, architecture and variant. Nothing in it
// is executable: it is for checking which platform a build picked.
func PlatformImage(p v1.Platform) (v1.Image, error) {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	b, err := LayerTar([]File{
		Reg("etc/platform", 0o644, s+"\n"),
		Dir("opt/"+p.Architecture, 0o755),
	})
	if err != nil {
		return nil, err
	}
	layer, err := LayerFromTar(b)
	if err != nil {
		return nil, err
	}
	cfg := v1.ConfigFile{
		Architecture: p.Architecture,
		OS:           p.OS,
		Variant:      p.Variant,
		Config: v1.Config{
			Env: []string{"PATH=" + DefaultPath, "PLATFORM=" + s},
			Cmd: []string{"cat", "/etc/platform"},
		},
	}
	return NewImage(cfg, []v1.Layer{layer}, []string{"synthetic " + s + " image"})
}

// PlatformIndex returns an OCI image index of a PlatformImage per entry of
// Platforms (linux/amd64 and linux/arm64/v8), each with its platform in the
// index descriptor.
func PlatformIndex() (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range Platforms {
		img, err := PlatformImage(p)
		if err != nil {
			return nil, err
		}
		p := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{MediaType: types.OCIManifestSchema1, Platform: &p},
		})
	}
	return idx, nil
}
