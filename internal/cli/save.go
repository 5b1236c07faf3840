package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/export"
	"github.com/kiln-build/kiln/pkg/store"
)

func isIndex(mt types.MediaType) bool {
	return mt == types.OCIImageIndex || mt == types.DockerManifestList
}

func newSaveCommand(g *globals) *cobra.Command {
	var output, format string
	cmd := &cobra.Command{
		Use:   "save [-o FILE] IMAGE [IMAGE...]",
		Short: "Write local images to a docker or OCI archive",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "docker-archive" && format != "oci-archive" {
				return fmt.Errorf("--format %q: want docker-archive or oci-archive", format)
			}
			st, err := g.openStore(cmd.Context(), cmd)
			if err != nil {
				return err
			}
			var items []store.Item
			for _, a := range args {
				d, ref, err := resolveLocal(st, g, a)
				if err != nil {
					return err
				}
				if format == "docker-archive" {
					ref = displayRepo(ref) // docker's short names
				}
				it := store.Item{Ref: ref}
				if isIndex(d.MediaType) {
					if it.Index, err = st.Index(d.Digest); err != nil {
						return err
					}
				} else if it.Image, err = st.Image(d.Digest); err != nil {
					return err
				}
				items = append(items, it)
			}
			dest := output
			if dest == "" {
				dest = export.Stdout
			}
			var e export.Exporter = export.Docker{Dest: dest, Stdout: g.stdout}
			if format == "oci-archive" {
				e = export.OCI{Dest: dest, Stdout: g.stdout}
				if dest != export.Stdout && !strings.HasSuffix(dest, ".tar") {
					// An OCI archive is always a tar, whatever its name.
					return writeOCIArchiveFile(dest, items)
				}
			}
			return e.Export(cmd.Context(), items)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file instead of stdout")
	cmd.Flags().StringVar(&format, "format", "docker-archive", "docker-archive or oci-archive")
	return cmd
}

// writeOCIArchiveFile writes an OCI archive to a path whose name does not
// end in .tar (export.OCI would write a layout directory there).
func writeOCIArchiveFile(path string, items []store.Item) error {
	return export.WriteFile(path, func(w io.Writer) error { return store.WriteOCIArchive(w, items) })
}
