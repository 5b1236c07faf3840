package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/sandbox"
)

// sandbox detects the isolation of RUN steps (--isolation).
func newDoctorCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Show which isolation RUN steps get here, why, and how to get more",
		Long: "doctor checks what kiln's RUN sandbox needs (user namespaces, subordinate ids,\n" +
			"newuidmap/newgidmap, overlay, /proc, seccomp) and prints the isolation mode this\n" +
			"environment gives, with the exact fix for each missing piece.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			mode, err := sandbox.ParseMode(g.isolation)
			if err != nil {
				return err
			}
			sb, rep, err := sandbox.New(cmd.Context(), sandbox.Options{Mode: mode})
			out := g.stdout
			if sb != nil {
				fmt.Fprintf(out, "isolation: %s\n  why: %s\n", sb.Mode(), sb.Reason())
				if sb.Mode() != sandbox.ModeNone {
					diff := "overlay upper directory"
					if !sb.Overlay() {
						diff = "working copy and metadata walk"
					}
					fmt.Fprintf(out, "  diffs: %s\n", diff)
				}
			} else {
				fmt.Fprintf(out, "isolation: none\n  why: %v\n", err)
			}
			fmt.Fprintln(out, "checks:")
			var fixes []string
			for _, c := range rep.Checks {
				mark := "ok  "
				if !c.OK {
					mark = "MISS"
				}
				fmt.Fprintf(out, "  [%s] %s: %s\n", mark, c.Name, c.Detail)
				if c.Fix != "" {
					fixes = append(fixes, fmt.Sprintf("%s: %s", c.Name, c.Fix))
				}
			}
			if len(fixes) > 0 {
				fmt.Fprintln(out, "to fix:")
				for _, f := range fixes {
					fmt.Fprintf(out, "  - %s\n", f)
				}
			}
			if sb == nil || sb.Mode() == sandbox.ModeNone {
				fmt.Fprintln(out, "in a Kubernetes pod, RUN as a non-root user needs:\n"+
					"  securityContext:\n"+
					"    runAsUser: 1000            # a user with /etc/subuid and /etc/subgid ranges in kiln's image\n"+
					"    seccompProfile: {type: Unconfined}\n"+
					"    appArmorProfile: {type: Unconfined}   # where AppArmor is enabled\n"+
					"    allowPrivilegeEscalation: true        # newuidmap/newgidmap are setuid or carry file capabilities\n"+
					"  builds without RUN work as they are.")
			}
			if sb != nil && sb.SingleMapping() {
				fmt.Fprintln(out, "note: "+strings.TrimPrefix(sb.Warning(), "warning: "))
			}
			return err
		},
	}
}
