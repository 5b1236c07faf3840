package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/store"
)

func newRmiCommand(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rmi IMAGE [IMAGE...]",
		Aliases: []string{"remove-image"},
		Short:   "Remove local images",
		Long: "Remove names (tags) of local images; an image given by ID loses all its names (with -f\n" +
			"when it has several). Blobs no image needs any more are removed from the store.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.openStore(cmd.Context(), cmd)
			if err != nil {
				return err
			}
			var failed []string
			for _, a := range args {
				if err := removeImage(st, g, a, force, func(s string) { fmt.Fprintln(g.stdout, s) }); err != nil {
					fmt.Fprintf(g.stderr, "Error: %v\n", err)
					failed = append(failed, a)
				}
			}
			if _, _, err := st.GC(cmd.Context()); err != nil {
				return err
			}
			if len(failed) > 0 {
				return fmt.Errorf("could not remove %s", strings.Join(failed, ", "))
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove every name of an image given by ID")
	return cmd
}

func removeImage(st *store.Store, g *globals, arg string, force bool, say func(string)) error {
	d, ref, err := resolveLocal(st, g, arg)
	if err != nil {
		return err
	}
	if ref != "" {
		if err := st.Untag(ref); err != nil {
			return err
		}
		say("Untagged: " + displayRepo(ref))
		return nil
	}
	refs, err := refsOf(st, d.Digest)
	if err != nil {
		return err
	}
	if len(refs) > 1 && !force {
		return fmt.Errorf("image %s has %d names (%s): remove them one by one or use -f", arg, len(refs), strings.Join(displayAll(refs), ", "))
	}
	for _, r := range refs {
		if err := st.Untag(r); err != nil {
			return err
		}
		say("Untagged: " + displayRepo(r))
	}
	say("Deleted: " + d.Digest.String())
	return nil
}

func displayAll(refs []string) []string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = displayRepo(r)
	}
	return out
}
