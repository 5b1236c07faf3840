package cli

import (
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/export"
	"github.com/kiln-build/kiln/pkg/imagearchive"
)

func newSaveCommand(g *globals) *cobra.Command {
	var output, format string
	cmd := &cobra.Command{
		Use:   "save [-o FILE] IMAGE [IMAGE...]",
		Short: "Write local images to a docker or OCI archive",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			typ, err := export.ParseFormat(format)
			if err != nil {
				return err
			}
			dest := output
			if dest == "" {
				dest = export.Stdout
			}
			e, err := export.NewArchive(typ, dest, g.stdout)
			if err != nil {
				return err
			}
			st, err := g.openStore(cmd.Context(), cmd)
			if err != nil {
				return err
			}
			var items []imagearchive.Item
			for _, a := range args {
				d, ref, err := resolveLocal(st, g, a)
				if err != nil {
					return err
				}
				a, err := st.Artifact(d)
				if err != nil {
					return err
				}
				items = append(items, imagearchive.Item{Ref: ref, Artifact: a})
			}
			return e.Export(cmd.Context(), items)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file instead of stdout")
	cmd.Flags().StringVar(&format, "format", "docker-archive", "docker-archive or oci-archive")
	return cmd
}
