package cli

import (
	"fmt"
	"os"
	"strconv"
	"strings"

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
	pf.StringVar(&g.diskLimit, "disk-limit", envOr(sandbox.DiskLimitEnv, "0"),
		"most a RUN step may write to disk (10g, 512m; docker's --storage-opt size=): a step that writes more is stopped, a larger file fails with EFBIG; 0: no limit (also $"+sandbox.DiskLimitEnv+")")
	pf.StringVar(&g.diskReserve, "disk-reserve", envOr(sandbox.DiskReserveEnv, "auto"),
		"free space RUN steps must leave on the store's filesystem (a size, or N% of it); a step writing below it is stopped; auto: 5%, at most 2GiB; 0: none (also $"+sandbox.DiskReserveEnv+")")
}

// addStorageOpt adds docker's and podman's --storage-opt (size=SIZE only:
// --disk-limit) to a command's flags.
func addStorageOpt(fl *pflag.FlagSet, g *globals) {
	fl.StringArrayVar(&g.storageOpts, "storage-opt", nil, "size=SIZE: as --disk-limit (docker's and podman's per-container quota; repeatable, the last wins)")
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
	return g.applyDiskLimits()
}

// applyDiskLimits reads --disk-limit, --storage-opt size= and
// --disk-reserve into the sandbox's settings.
func (g *globals) applyDiskLimits() error {
	limit, err := sandbox.ParseDiskSize(g.diskLimit)
	if err != nil {
		return fmt.Errorf("--disk-limit=%s: %w", g.diskLimit, err)
	}
	for _, o := range g.storageOpts {
		k, v, _ := strings.Cut(o, "=")
		if k != "size" {
			return fmt.Errorf("--storage-opt %s: kiln has size=SIZE only (the most a RUN step may write, as --disk-limit)", o)
		}
		if limit, err = sandbox.ParseDiskSize(v); err != nil {
			return fmt.Errorf("--storage-opt %s: %w", o, err)
		}
	}
	reserve, err := sandbox.ParseReserve(g.diskReserve)
	if err != nil {
		return err
	}
	sandbox.SetDiskLimit(limit)
	sandbox.SetDiskReserve(reserve)
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
