package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/imagearchive"
	"github.com/kiln-build/kiln/pkg/oci"
)

func newLoadCommand(g *globals) *cobra.Command {
	var input string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "load [-i FILE]",
		Short: "Load images from a docker or OCI archive (or OCI layout directory)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.openStore(cmd.Context(), cmd)
			if err != nil {
				return err
			}
			path := input
			if path == "" || path == "-" {
				tmp, err := os.CreateTemp("", "kiln-load-")
				if err != nil {
					return err
				}
				defer os.Remove(tmp.Name())
				if _, err := io.Copy(tmp, g.stdin); err != nil {
					tmp.Close()
					return fmt.Errorf("reading the archive from stdin: %w", err)
				}
				if err := tmp.Close(); err != nil {
					return err
				}
				path = tmp.Name()
			}
			items, err := imagearchive.Read(path)
			if err != nil {
				return err
			}
			if len(items) == 0 {
				return fmt.Errorf("%s holds no image", input)
			}
			for _, it := range items {
				d, err := st.WriteArtifact(cmd.Context(), it.Artifact)
				if err != nil {
					return fmt.Errorf("loading %s: %w", input, err)
				}
				if it.Ref != "" {
					r, err := tagRef(it.Ref, g)
					if err == nil {
						if err := st.Tag(r.Name(), d); err != nil {
							return err
						}
						if !quiet {
							fmt.Fprintf(g.stdout, "Loaded image: %s\n", displayRepo(r.Name()))
						}
						continue
					}
				}
				id := d.Digest
				if img, ok := oci.AsImage(it.Artifact); ok {
					if c, err := img.ConfigName(); err == nil {
						id = c
					}
				}
				if !quiet {
					fmt.Fprintf(g.stdout, "Loaded image ID: %s\n", id)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "archive to read (default: stdin)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print nothing")
	return cmd
}
