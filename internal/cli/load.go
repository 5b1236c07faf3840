package cli

import (
	"fmt"
	"io"

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
			items, src, err := readArchive(input, g.stdin)
			if err != nil {
				return err
			}
			for _, it := range items {
				d, err := st.WriteArtifact(cmd.Context(), it.Artifact)
				if err != nil {
					return fmt.Errorf("loading %s: %w", src, err)
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

// readArchive reads the archive load was given: the file or directory
// input, or stdin when input is "" or "-"; src names it in messages.
func readArchive(input string, stdin io.Reader) (items []imagearchive.Item, src string, err error) {
	src = input
	if input == "" || input == "-" {
		src = "stdin"
		items, err = imagearchive.ReadStream(stdin, src)
	} else {
		items, err = imagearchive.Read(input)
	}
	if err == nil && len(items) == 0 {
		err = fmt.Errorf("%s holds no image", src)
	}
	return items, src, err
}
