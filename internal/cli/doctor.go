package cli

import (
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/sandbox"
	"github.com/kiln-build/kiln/pkg/store"
)

// newDoctorCommand reports the isolation of RUN steps (--isolation) and
// every setting that limits it, with the fix (pkg/sandbox's Diagnose),
// then the registry policy in effect.
func newDoctorCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Show which isolation RUN steps get here, why, and how to get more",
		Long: "doctor checks what kiln's RUN sandbox needs (seccomp, capabilities, no_new_privs, user\n" +
			"namespaces, /proc, overlay where the store is, subordinate ids, newuidmap/newgidmap),\n" +
			"prints the isolation mode this environment gives, the exact pod securityContext or\n" +
			"image change that lifts each limit, and the mode each Pod Security Standards level gives;\n" +
			"then the registry policy files in effect (kiln policy check says which rule applies to an image).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			mode := g.isolation
			loc, err := store.Locate(g.root)
			if err != nil {
				return err
			}
			d := sandbox.Diagnose(cmd.Context(), sandbox.DoctorOptions{Mode: mode, Store: loc.Root, StoreSource: loc.Source,
				ScratchDir: filepath.Join(loc.Root, "rootfs")})
			d.Write(g.stdout)
			writePolicyReport(g.stdout, g.loadPolicy())
			return d.Err
		},
	}
}
