package oci

import (
	"encoding/json"
	"fmt"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// RefName returns the ref an image layout's index.json entry carries: its
// AnnotationRefName, else its AnnotationContainerdName; "" for an unnamed
// entry.
func RefName(d v1.Descriptor) string {
	if r := d.Annotations[AnnotationRefName]; r != "" {
		return r
	}
	return d.Annotations[AnnotationContainerdName]
}

// RemoveRef removes the entries of im that carry ref, reporting whether
// there was one.
func RemoveRef(im *v1.IndexManifest, ref string) bool {
	kept := im.Manifests[:0]
	found := false
	for _, d := range im.Manifests {
		if RefName(d) == ref {
			found = true
			continue
		}
		kept = append(kept, d)
	}
	im.Manifests = kept
	return found
}

// NormalizeIndex puts an image layout's index.json in the form kiln
// writes it: named entries first, sorted by ref, then the unnamed ones in
// their order; schemaVersion 2, the OCI index media type and an array of
// manifests (never null) when they are missing.
func NormalizeIndex(im *v1.IndexManifest) {
	sort.SliceStable(im.Manifests, func(i, j int) bool {
		ri, rj := RefName(im.Manifests[i]), RefName(im.Manifests[j])
		if (ri == "") != (rj == "") {
			return ri != ""
		}
		return ri < rj
	})
	if im.SchemaVersion == 0 {
		im.SchemaVersion = 2
	}
	if im.MediaType == "" {
		im.MediaType = types.OCIImageIndex
	}
	if im.Manifests == nil {
		im.Manifests = []v1.Descriptor{} // the spec wants an array, not null
	}
}

// LayoutVersion is the imageLayoutVersion of the image layouts kiln
// writes and reads.
const LayoutVersion = "1.0.0"

// ImageLayout is the content of an image layout's oci-layout file.
type ImageLayout struct {
	Version string `json:"imageLayoutVersion"`
}

// CheckLayout checks data, the oci-layout file read from path: JSON with
// the imageLayoutVersion kiln knows.
func CheckLayout(path string, data []byte) error {
	var l ImageLayout
	if err := json.Unmarshal(data, &l); err != nil {
		return fmt.Errorf("%s is not an OCI layout file: %w", path, err)
	}
	if l.Version != LayoutVersion {
		return fmt.Errorf("%s: unsupported imageLayoutVersion %q", path, l.Version)
	}
	return nil
}
