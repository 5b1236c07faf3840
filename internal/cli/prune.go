package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/build"
	"github.com/kiln-build/kiln/pkg/cache"
	"github.com/kiln-build/kiln/pkg/sandbox"
)

func newPruneCommand(g *globals) *cobra.Command {
	var filters []string
	var force bool
	cmd := &cobra.Command{
		Use:     "prune",
		Aliases: []string{"builder-prune"},
		Short:   "Remove step-cache entries, and the blobs and unpacked layers no image needs",
		Long: "Remove the step cache's entries (all of them, or with --filter until=DURATION those not used\n" +
			"for that long), then the blobs that no image and no remaining entry needs, and the unpacked\n" +
			"layers of RUN steps that belong to no stored image and were not used for an hour (or for a\n" +
			"longer DURATION). Blobs that became unreferenced less than an hour ago stay: a build running\n" +
			"alongside may be about to use them.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var before time.Time
			for _, f := range filters {
				k, v, _ := strings.Cut(f, "=")
				if k != "until" {
					return fmt.Errorf("--filter %q: only until=DURATION is supported", f)
				}
				d, err := time.ParseDuration(v)
				if err != nil || d < 0 {
					return fmt.Errorf("--filter %q: want a duration such as 24h", f)
				}
				before = time.Now().Add(-d)
			}
			st, err := g.openStore(cmd.Context(), cmd)
			if err != nil {
				return err
			}
			n, err := cache.NewLocal(st).Prune(before)
			if err != nil {
				return err
			}
			removed, freed, err := st.GC(cmd.Context())
			if err != nil {
				return err
			}
			// Unpacked layers of no stored image, unused for an hour (or
			// for the --filter duration): removed through the sandbox, as
			// they may belong to subordinate ids.
			// Never less than an hour: a running build's layers are only
			// protected by their recent use.
			grace := time.Hour
			if !before.IsZero() && time.Since(before) > grace {
				grace = time.Since(before)
			}
			unpacked := 0
			if sb, _, err := sandbox.New(cmd.Context(), sandbox.Options{}); err == nil {
				if unpacked, err = build.PruneUnpacked(cmd.Context(), st, sb, grace); err != nil {
					return err
				}
			}
			fmt.Fprintf(g.stdout, "Deleted %d step-cache entries, %d blobs and %d unpacked layers\n", n, removed, unpacked)
			fmt.Fprintf(g.stdout, "Total reclaimed space: %s\n", humanSize(freed))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&filters, "filter", nil, "until=DURATION: only entries not used for DURATION (e.g. 24h)")
	fl.BoolVarP(&force, "force", "f", false, "accepted for docker compatibility (kiln never asks)")
	return cmd
}
