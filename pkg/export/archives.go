package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/kiln-build/kiln/pkg/store"
)

// OCI writes an OCI image layout: a directory, or a tar of one when Dest
// ends in .tar (or is "-").
type OCI struct {
	Dest   string
	Stdout io.Writer
}

// Export implements Exporter.
func (o OCI) Export(_ context.Context, items []store.Item) error {
	if o.Dest != Stdout && !strings.HasSuffix(o.Dest, ".tar") {
		if err := store.WriteOCILayout(o.Dest, items); err != nil {
			return fmt.Errorf("%s: %w", o, err)
		}
		return nil
	}
	if err := writeDest(o.Dest, o.Stdout, func(w io.Writer) error { return store.WriteOCIArchive(w, items) }); err != nil {
		return fmt.Errorf("%s: %w", o, err)
	}
	return nil
}

func (o OCI) String() string { return describe("oci", o.Dest) }

// Docker writes a docker archive (`docker load`'s format), one platform
// per image; references are given docker's short names by the caller.
type Docker struct {
	Dest   string
	Stdout io.Writer
}

// Export implements Exporter.
func (d Docker) Export(_ context.Context, items []store.Item) error {
	for _, it := range items {
		if it.Index != nil {
			return fmt.Errorf("%s: a docker archive holds one platform per image; build with one --platform or use type=oci", d)
		}
	}
	if d.Dest == "" {
		return errors.New("docker output: dest is required")
	}
	if err := writeDest(d.Dest, d.Stdout, func(w io.Writer) error { return store.WriteDockerArchive(w, items) }); err != nil {
		return fmt.Errorf("%s: %w", d, err)
	}
	return nil
}

func (d Docker) String() string { return describe("docker", d.Dest) }
