package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kiln-build/kiln/pkg/build"
)

// addCompatFlags adds the build flags of buildx and podman that CI scripts
// pass: each does what it does there, or is an error saying why not.
func addCompatFlags(fl *pflag.FlagSet, f *buildFlags) {
	fl.StringVar(&f.pull, "pull", "missing", "base images: always (docker's --pull), missing, never or newer (podman's --pull)")
	fl.Lookup("pull").NoOptDefVal = "always"
	fl.StringVar(&f.network, "network", "default", "network of RUN steps that do not set one: default, host or none")
	fl.StringVar(&f.provenance, "provenance", "", "buildx's provenance attestation: only false is accepted (kiln attaches none)")
	fl.StringVar(&f.sbom, "sbom", "", "buildx's SBOM attestation: only false is accepted (kiln attaches none)")
	fl.Lookup("provenance").NoOptDefVal = "true"
	fl.Lookup("sbom").NoOptDefVal = "true"
	fl.StringVar(&f.builder, "builder", "", "buildx's builder instance: accepted and ignored (kiln has no builder instances)")
	fl.BoolVar(&f.layers, "layers", true, "podman's --layers: false runs every step uncached (as --no-cache)")
}

// checkCompat validates the compatibility flags and returns the pull
// policy.
func (f *buildFlags) checkCompat(cmd *cobra.Command, stderr io.Writer) (build.PullPolicy, error) {
	pull, err := build.ParsePullPolicy(f.pull)
	if err != nil {
		return "", err
	}
	switch f.network {
	case "", "default", "host", "none":
	default:
		return "", fmt.Errorf("--network=%s: kiln's RUN steps have default, host or none", f.network)
	}
	for _, a := range []struct{ flag, v string }{{"--provenance", f.provenance}, {"--sbom", f.sbom}} {
		if a.v == "" {
			continue
		}
		switch strings.ToLower(a.v) {
		case "false", "0":
		default:
			return "", fmt.Errorf("%s=%s: kiln does not attach attestations yet; use %s=false", a.flag, a.v, a.flag)
		}
	}
	if f.builder != "" {
		fmt.Fprintf(stderr, "note: --builder %s is ignored: kiln builds in-process, without builder instances\n", f.builder)
	}
	if cmd.Flags().Changed("layers") && !f.layers {
		f.noCache = true
	}
	return pull, nil
}
