package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newTagCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE TARGET [TARGET...]",
		Short: "Give a local image more names",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.openStore(cmd.Context(), cmd)
			if err != nil {
				return err
			}
			d, _, err := resolveLocal(st, g, args[0])
			if err != nil {
				return err
			}
			var targets []string
			for _, t := range args[1:] {
				r, err := tagRef(t, g)
				if err != nil {
					return err
				}
				targets = append(targets, r.Name())
			}
			for _, t := range targets {
				if err := st.Tag(t, d); err != nil {
					return fmt.Errorf("tagging %s: %w", t, err)
				}
			}
			return nil
		},
	}
}
