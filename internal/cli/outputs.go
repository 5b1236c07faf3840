package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/atomicfile"
	"github.com/kiln-build/kiln/pkg/build"
	"github.com/kiln-build/kiln/pkg/export"
	"github.com/kiln-build/kiln/pkg/imagearchive"
	"github.com/kiln-build/kiln/pkg/oci"
)

// buildOutputs is what build's --output values ask for.
type buildOutputs struct {
	exporters   export.Multi
	names       []string // type=image/registry name=...
	push        bool
	compression string
	stdout      bool // an exporter writes to stdout: print no image ID there
	ociArtifact bool // oci-artifact=true: attestations are OCI 1.1 referrers
}

func parseOutputs(f *buildFlags, stdout io.Writer) (buildOutputs, error) {
	var b buildOutputs
	for _, s := range f.outputs {
		o, err := export.Parse(s, stdout)
		if err != nil {
			return b, err
		}
		if o.Exporter != nil {
			if b.stdout && o.Stdout {
				return b, fmt.Errorf("--output %q: only one output can go to stdout", s)
			}
			b.stdout = b.stdout || o.Stdout
			b.exporters = append(b.exporters, o.Exporter)
		}
		if o.Type == export.TypeImage || o.Type == export.TypeRegistry {
			b.names = append(b.names, o.Names...)
		}
		b.push = b.push || o.Push
		b.ociArtifact = b.ociArtifact || o.OCIArtifact
		if o.Compression != "" {
			if b.compression != "" && b.compression != o.Compression {
				return b, fmt.Errorf("--output: compression=%s and compression=%s disagree", b.compression, o.Compression)
			}
			b.compression = o.Compression
		}
	}
	return b, nil
}

// exportBuilt writes the build's result to every --output destination.
func exportBuilt(ctx context.Context, exps export.Multi, res *build.Result, tags []string, logw io.Writer) error {
	items := resultItems(res, tags)
	for _, e := range exps {
		if err := e.Export(ctx, items); err != nil {
			return err
		}
		fmt.Fprintf(logw, "Wrote %s\n", e)
	}
	return nil
}

// resultItems lists the build's result once per tag (once, unnamed,
// without tags).
func resultItems(res *build.Result, tags []string) []imagearchive.Item {
	refs := tags
	if len(refs) == 0 {
		refs = []string{""}
	}
	items := make([]imagearchive.Item, 0, len(refs))
	for _, t := range refs {
		items = append(items, imagearchive.Item{Ref: t, Artifact: res.Artifact})
	}
	return items
}

// writeMetadata writes buildx's --metadata-file JSON: the keys CI scripts
// read (containerimage.digest, containerimage.config.digest, image.name,
// containerimage.descriptor).
func writeMetadata(path string, res *build.Result, desc v1.Descriptor, tags []string) error {
	m := map[string]any{
		"containerimage.digest":     desc.Digest.String(),
		"containerimage.descriptor": desc,
	}
	if !oci.IsIndex(res.Artifact) {
		m["containerimage.config.digest"] = res.ID.String()
	}
	if len(tags) > 0 {
		m["image.name"] = strings.Join(tags, ",")
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("--metadata-file: %w", err)
	}
	return nil
}
