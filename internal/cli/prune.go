package cli

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/build"
	"github.com/kiln-build/kiln/pkg/cache"
	"github.com/kiln-build/kiln/pkg/sandbox"
	"github.com/kiln-build/kiln/pkg/store"
)

func newPruneCommand(g *globals) *cobra.Command {
	var filters []string
	var force, verify, all bool
	cmd := &cobra.Command{
		Use:     "prune",
		Aliases: []string{"builder-prune"},
		Short:   "Remove step-cache entries, and the blobs and unpacked layers no image needs",
		Long: "Remove the step cache's entries (all of them, or with --filter until=DURATION those not used\n" +
			"for that long), then the blobs that no image and no remaining entry needs, and the unpacked\n" +
			"layers of RUN steps that belong to no stored image and were not used for an hour (or for a\n" +
			"longer DURATION). Blobs that became unreferenced less than an hour ago stay: a build running\n" +
			"alongside may be about to use them. The digests of build-context files that are gone or\n" +
			"changed, and the answers about base images' files whose layers the store no longer has, go\n" +
			"too; with --all every kept context digest and answer goes (rebuilds read the context again).",
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
			sb, _, err := sandbox.New(cmd.Context(), sandbox.Options{Mode: g.isolation, ScratchDir: filepath.Join(st.Root(), "rootfs")})
			switch {
			case err == nil:
				if unpacked, err = build.PruneUnpacked(cmd.Context(), st, sb, grace); err != nil {
					return err
				}
			case g.isolation != "":
				// An isolation asked for that is not available: say so
				// (auto finds none only where no RUN step can have run).
				return fmt.Errorf("removing unpacked layers: %w", err)
			}
			sums, err := cache.PruneFileSums(st, all, before)
			if err != nil {
				return err
			}
			answers, err := build.PrunePathAnswers(st, all, before)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "Deleted %d step-cache entries, %d blobs and %d unpacked layers\n", n, removed, unpacked)
			fmt.Fprintf(g.stdout, "Deleted %d context-file digests and the answers about %d base images\n", sums, answers)
			fmt.Fprintf(g.stdout, "Total reclaimed space: %s\n", humanSize(freed))
			if verify {
				return verifyUnpacked(cmd, g, st)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&filters, "filter", nil, "until=DURATION: only entries not used for DURATION (e.g. 24h)")
	fl.BoolVarP(&all, "all", "a", false, "also every kept context-file digest and answer about base images' files, not only those that can no longer be used")
	fl.BoolVarP(&force, "force", "f", false, "accepted for docker compatibility (kiln never asks)")
	fl.BoolVar(&verify, "verify", false, "then compare every unpacked layer with its layer's tar (checked against its diff ID) and remove those that differ or that no image has; exit 1 when one differed")
	return cmd
}

// verifyUnpacked is prune --verify: the unpacked layers against their
// layers (build.VerifyUnpacked).
func verifyUnpacked(cmd *cobra.Command, g *globals, st *store.Store) error {
	// The mode's mapping names the unpacked layers' directory.
	sb, _, err := sandbox.New(cmd.Context(), sandbox.Options{Mode: g.isolation, ScratchDir: filepath.Join(st.Root(), "rootfs")})
	if err != nil {
		return err
	}
	vs, err := build.VerifyUnpacked(cmd.Context(), st, sb)
	if err != nil {
		return err
	}
	bad, unknown := 0, 0
	for _, v := range vs {
		switch {
		case len(v.Problems) > 0:
			bad++
			fmt.Fprintf(g.stderr, "unpacked layer %s differs from its layer (removed):\n  %s\n", v.Chain, strings.Join(v.Problems, "\n  "))
		case v.Unknown:
			unknown++
		}
	}
	fmt.Fprintf(g.stdout, "Verified %d unpacked layers: %d differed, %d of no stored image; all of those removed\n", len(vs)-unknown, bad, unknown)
	if bad > 0 {
		return fmt.Errorf("%d unpacked layers did not match their layers (removed: builds unpack them again)", bad)
	}
	return nil
}
