package build

import (
	"encoding/json"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	plat "github.com/kiln-build/kiln/pkg/platform"
)

// Annotation is one buildx --annotation: a key and value for the image
// manifests, the index, or the index's descriptors of the manifests,
// optionally for one platform only.
type Annotation struct {
	// Kinds are where it goes: "manifest", "index", "manifest-descriptor"
	// or "index-descriptor" (buildx's names).
	Kinds []string
	// Platform, when set, limits manifest and manifest-descriptor
	// annotations to that platform's image.
	Platform *v1.Platform
	Key      string
	Value    string
}

// ParseAnnotation reads buildx's --annotation value:
// [TYPE[,TYPE...][\[PLATFORM\]]:]KEY=VALUE, where TYPE is manifest (the
// default), index, manifest-descriptor or index-descriptor.
func ParseAnnotation(s string) (Annotation, error) {
	kv, val, ok := strings.Cut(s, "=")
	if !ok {
		return Annotation{}, fmt.Errorf("--annotation %q: want [TYPE:]KEY=VALUE", s)
	}
	a := Annotation{Kinds: []string{"manifest"}, Key: kv, Value: val}
	if prefix, key, ok := strings.Cut(kv, ":"); ok {
		a.Key = key
		kinds := prefix
		if i := strings.IndexByte(prefix, '['); i >= 0 {
			if !strings.HasSuffix(prefix, "]") {
				return Annotation{}, fmt.Errorf("--annotation %q: a platform is written TYPE[os/arch]:KEY=VALUE", s)
			}
			p, err := v1.ParsePlatform(prefix[i+1 : len(prefix)-1])
			if err != nil {
				return Annotation{}, fmt.Errorf("--annotation %q: %v", s, err)
			}
			np := plat.Normalize(*p)
			a.Platform = &np
			kinds = prefix[:i]
		}
		a.Kinds = nil
		for _, k := range strings.Split(kinds, ",") {
			switch k {
			case "manifest", "index", "manifest-descriptor", "index-descriptor":
				a.Kinds = append(a.Kinds, k)
			case "":
				a.Kinds = append(a.Kinds, "manifest")
			default:
				return Annotation{}, fmt.Errorf("--annotation %q: unknown type %q (want manifest, index, manifest-descriptor or index-descriptor)", s, k)
			}
		}
	}
	if a.Key == "" {
		return Annotation{}, fmt.Errorf("--annotation %q: no key", s)
	}
	if a.Platform != nil {
		for _, k := range a.Kinds {
			if k == "index" || k == "index-descriptor" {
				return Annotation{}, fmt.Errorf("--annotation %q: an %s annotation cannot name a platform", s, k)
			}
		}
	}
	return a, nil
}

// has reports whether a goes to kind (for platform p, where that applies).
func (a Annotation) has(kind string, p *v1.Platform) bool {
	for _, k := range a.Kinds {
		if k != kind {
			continue
		}
		if a.Platform == nil || p == nil {
			return true
		}
		return plat.Format(*a.Platform) == plat.Format(plat.Normalize(*p))
	}
	return false
}

// checkAnnotations refuses annotations the result cannot carry, before
// any work: docker's manifests have none, a single image no index.
func checkAnnotations(anns []Annotation, format Format, multi bool) error {
	for _, a := range anns {
		if format == FormatDocker {
			return fmt.Errorf("--annotation %s: docker's manifest format has no annotations (use --format oci)", a.Key)
		}
		for _, k := range a.Kinds {
			switch {
			case k == "index-descriptor":
				return fmt.Errorf("--annotation index-descriptor:%s: kiln writes no index of indexes (an OCI layout's index.json is written by --output type=oci)", a.Key)
			case !multi && (k == "index" || k == "manifest-descriptor"):
				return fmt.Errorf("--annotation %s:%s: a single-platform build has no index (build with --platform a,b)", k, a.Key)
			}
		}
	}
	return nil
}

// annotateImage adds the manifest annotations for platform p to img.
func annotateImage(img v1.Image, p v1.Platform, anns []Annotation) v1.Image {
	m := map[string]string{}
	for _, a := range anns {
		if a.has("manifest", &p) {
			m[a.Key] = a.Value
		}
	}
	if len(m) == 0 {
		return img
	}
	return mutate.Annotations(img, m).(v1.Image)
}

// annotate adds the index and manifest-descriptor annotations to ix.
func (ix *index) annotate(anns []Annotation) error {
	if len(anns) == 0 {
		return nil
	}
	var m v1.IndexManifest
	if err := json.Unmarshal(ix.manifest, &m); err != nil {
		return err
	}
	for _, a := range anns {
		if a.has("index", nil) {
			if m.Annotations == nil {
				m.Annotations = map[string]string{}
			}
			m.Annotations[a.Key] = a.Value
		}
		for i := range m.Manifests {
			d := &m.Manifests[i]
			if a.has("manifest-descriptor", d.Platform) {
				if d.Annotations == nil {
					d.Annotations = map[string]string{}
				}
				d.Annotations[a.Key] = a.Value
			}
		}
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	ix.manifest = raw
	return nil
}
