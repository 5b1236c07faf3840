package cli

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/registry"
)

func newManifestCommand(g *globals) *cobra.Command {
	m := &cobra.Command{
		Use:   "manifest",
		Short: "Read image manifests and indexes in a registry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return fmt.Errorf("kiln manifest needs a subcommand: inspect")
		},
	}
	var insecure bool
	inspect := &cobra.Command{
		Use:   "inspect REF",
		Short: "Print the manifest or index REF names in its registry, without pulling (docker manifest inspect)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkRegistryFlags(cmd); err != nil {
				return err
			}
			rc := g.registryClient(cmd)
			ref, err := rc.ParseReference(args[0])
			if err != nil {
				return err
			}
			if insecure {
				ro := rc.Options()
				ro.Insecure = append(ro.Insecure, ref.Context().RegistryStr())
				rc = registry.New(ro)
				if ref, err = rc.ParseReference(args[0]); err != nil {
					return err
				}
			}
			d, err := rc.Fetch(cmd.Context(), ref)
			if err != nil {
				return err
			}
			var out bytes.Buffer
			if err := json.Indent(&out, d.Manifest, "", "   "); err != nil {
				return fmt.Errorf("%s: the registry's manifest is not JSON: %w", ref, err)
			}
			out.WriteByte('\n')
			_, err = g.stdout.Write(out.Bytes())
			return err
		},
	}
	inspect.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP or an unverified certificate for this registry")
	m.AddCommand(inspect)
	return m
}
