package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/kiln-build/kiln/pkg/imagearchive"
	"github.com/kiln-build/kiln/pkg/oci"
	"github.com/kiln-build/kiln/pkg/registry"
)

func init() {
	register(TypeOCI, kind{
		new: func(dest string, stdout io.Writer, archive bool) (Exporter, error) {
			return OCI{Dest: dest, Stdout: stdout, Archive: archive}, nil
		},
		names: true, layers: true, artifacts: true, archive: true,
	})
	register(TypeDocker, kind{
		new: func(dest string, stdout io.Writer, _ bool) (Exporter, error) {
			return Docker{Dest: dest, Stdout: stdout}, nil
		},
		loads: true, names: true, layers: true, archive: true,
	})
}

// OCI writes an OCI image layout: a directory, or a tar of one when Dest
// ends in .tar (or is "-") or Archive is set.
type OCI struct {
	Dest   string
	Stdout io.Writer
	// Archive: always a tar, whatever Dest's name (kiln save).
	Archive bool
}

// Export implements Exporter.
func (o OCI) Export(_ context.Context, items []imagearchive.Item) error {
	if !o.Archive && o.Dest != Stdout && !strings.HasSuffix(o.Dest, ".tar") {
		if err := imagearchive.WriteLayout(o.Dest, items); err != nil {
			return fmt.Errorf("%s: %w", o, err)
		}
		return nil
	}
	if err := writeDest(o.Dest, o.Stdout, func(w io.Writer) error { return imagearchive.WriteOCIArchive(w, items) }); err != nil {
		return fmt.Errorf("%s: %w", o, err)
	}
	return nil
}

func (o OCI) String() string { return describe("oci", o.Dest) }

// Docker writes a docker archive (`docker load`'s format), one platform
// per image; references are written with docker's short names
// ("busybox:1" for "index.docker.io/library/busybox:1").
type Docker struct {
	Dest   string
	Stdout io.Writer
}

// Export implements Exporter.
func (d Docker) Export(_ context.Context, items []imagearchive.Item) error {
	for _, it := range items {
		if oci.IsIndex(it.Artifact) {
			return fmt.Errorf("%s: a docker archive holds one platform per image; build with one --platform or use type=oci", d)
		}
	}
	if d.Dest == "" {
		return errors.New("docker output: dest is required")
	}
	named := make([]imagearchive.Item, len(items))
	for i, it := range items {
		it.Ref = registry.FamiliarString(it.Ref)
		named[i] = it
	}
	if err := writeDest(d.Dest, d.Stdout, func(w io.Writer) error { return imagearchive.WriteDockerArchive(w, named) }); err != nil {
		return fmt.Errorf("%s: %w", d, err)
	}
	return nil
}

func (d Docker) String() string { return describe("docker", d.Dest) }
