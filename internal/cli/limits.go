package cli

import (
	"fmt"
	"os"
	"strconv"

	units "github.com/docker/go-units"
	"github.com/spf13/pflag"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/registry"
	"github.com/kiln-build/kiln/pkg/sandbox"
)

// addLimitFlags adds the flags that bound what kiln reads from outside
// before it can verify it (see SECURITY.md).
func addLimitFlags(pf *pflag.FlagSet, g *globals) {
	pf.StringVar(&g.maxManifest, "max-manifest-size", envOr("KILN_MAX_MANIFEST_SIZE", units.BytesSize(registry.DefaultMaxManifestSize)),
		"largest manifest or index read from a registry (also $KILN_MAX_MANIFEST_SIZE)")
	pf.StringVar(&g.maxConfig, "max-config-size", envOr("KILN_MAX_CONFIG_SIZE", units.BytesSize(registry.DefaultMaxConfigSize)),
		"largest image config read from a registry (also $KILN_MAX_CONFIG_SIZE)")
	pf.Int64Var(&g.maxRatio, "max-decompression-ratio", archive.ExpansionRatio(),
		"stop a layer, ADD archive or stdin context that decompresses to more than this many times its size, beyond the first 256 MiB; 0: no limit (also $"+archive.ExpansionEnv+")")
	pf.Int64Var(&g.pidsLimit, "pids-limit", sandbox.PidsLimit(),
		"most processes and threads a RUN step may have at once (a fork bomb fails the step); 0 or -1: no limit (also $"+sandbox.PidsLimitEnv+")")
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// applyLimits checks the limit flags and sets the process-wide ones.
func (g *globals) applyLimits() error {
	for _, f := range []struct{ name, v string }{{"--max-manifest-size", g.maxManifest}, {"--max-config-size", g.maxConfig}} {
		if _, err := parseSize(f.v); err != nil {
			return fmt.Errorf("%s=%s: %w", f.name, f.v, err)
		}
	}
	if g.maxRatio < 0 {
		return fmt.Errorf("--max-decompression-ratio=%d: want 0 (no limit) or more", g.maxRatio)
	}
	archive.SetExpansionRatio(g.maxRatio)
	sandbox.SetPidsLimit(g.pidsLimit)
	return nil
}

// limitBytes are the registry size limits (0 where a flag was not parsed:
// the registry package's default).
func (g *globals) limitBytes() (manifest, config int64) {
	manifest, _ = parseSize(g.maxManifest)
	config, _ = parseSize(g.maxConfig)
	return manifest, config
}

// parseSize reads "4MiB", "16M", "1048576" (binary units, as docker's
// --memory); empty is 0.
func parseSize(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
		return n, nil
	}
	n, err := units.RAMInBytes(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("want a positive size such as 4MiB or 16777216")
	}
	return n, nil
}
