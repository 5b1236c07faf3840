package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/registry"
)

func newLogoutCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "logout [REGISTRY]",
		Short: "Remove the stored credentials for a registry (default: Docker Hub)",
		Long: "Remove REGISTRY's credentials from every auth file kiln reads (--authfile,\n" +
			"$REGISTRY_AUTH_FILE, containers' auth.json files, docker's config.json files).",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			reg := ""
			if len(args) == 1 {
				reg = args[0]
			}
			shown := reg
			if shown == "" {
				shown = "docker.io"
			}
			err := g.registryClient(cmd).Logout(cmd.Context(), reg)
			if errors.Is(err, registry.ErrNotLoggedIn) {
				fmt.Fprintf(g.stdout, "Not logged in to %s\n", shown)
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "Removing login credentials for %s\n", shown)
			return nil
		},
	}
}
