package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/atomicfile"
	"github.com/kiln-build/kiln/pkg/attest"
	"github.com/kiln-build/kiln/pkg/build"
	"github.com/kiln-build/kiln/pkg/progress"
)

// kanikoFlags are kaniko executor's flags that kiln maps onto a build.
type kanikoFlags struct {
	context, contextSubPath, dockerfile string
	destinations, buildArgs, labels     []string
	noPush, noPushCache                 bool
	tarPath, ociLayoutPath              string
	digestFile, nameDigest, nameTagDig  string
	target, platform, compression       string
	cache                               bool
	cacheRepo                           string
	cacheTTL                            time.Duration
	insecure, insecurePull              bool
	skipTLS, skipTLSPull                bool
	insecureRegs, skipTLSRegs, mirrors  []string
	reproducible                        bool
	pushRetry                           int
	verbosity, logFormat                string
	// gitSource is the git context fetched, for provenance.
	gitSource *attest.Material
}

// kanikoNoOps are kaniko flags about its own snapshotting, cleanup and
// caching of the container it runs in: kiln has no such state, so they
// are accepted and a note says they do nothing.
var kanikoNoOps = map[string]string{
	"snapshot-mode": "string", "single-snapshot": "bool", "use-new-run": "bool", "cleanup": "bool",
	"ignore-path": "array", "ignore-var-run": "bool", "kaniko-dir": "string", "force": "bool",
	"skip-unused-stages": "bool", "cache-dir": "string", "cache-copy-layers": "bool",
	"cache-run-layers": "bool", "compressed-caching": "bool", "compression-level": "string",
	"image-fs-extract-retry": "string", "skip-push-permission-check": "bool", "force-build-metadata": "bool",
	"log-timestamp": "bool", "image-download-retry": "string", "preserve-context": "bool",
}

func newExecutorCommand(g *globals) *cobra.Command {
	var k kanikoFlags
	cmd := &cobra.Command{
		Use:   "executor [kaniko flags]",
		Short: "Build and push with kaniko's executor flags (also when kiln runs as `executor`)",
		Long: "kiln executor takes kaniko's flags, so a kaniko CI job works by changing only its image:\n" +
			"  kiln executor --context dir:///workspace --dockerfile Dockerfile --destination REG/APP:TAG\n" +
			"kaniko's /kaniko/.docker/config.json is read when DOCKER_CONFIG is not set.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runExecutor(cmd, g, &k)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&k.context, "context", "c", "/workspace/", "build context: a directory, dir://DIR or tar://FILE.tar[.gz]")
	fl.StringVar(&k.contextSubPath, "context-sub-path", "", "subdirectory of the context to build")
	fl.StringVarP(&k.dockerfile, "dockerfile", "f", "Dockerfile", "Dockerfile path (relative to the working directory, else to the context)")
	fl.StringArrayVarP(&k.destinations, "destination", "d", nil, "image to push to (repeatable)")
	fl.BoolVar(&k.noPush, "no-push", false, "build without pushing")
	fl.BoolVar(&k.noPushCache, "no-push-cache", false, "do not push the step cache to --cache-repo")
	fl.StringVar(&k.tarPath, "tar-path", "", "also write the image as a docker archive (with the destinations as tags)")
	fl.StringVar(&k.ociLayoutPath, "oci-layout-path", "", "also write the image as an OCI image layout directory")
	fl.StringVar(&k.digestFile, "digest-file", "", "write the image's manifest digest to this file")
	fl.StringVar(&k.nameDigest, "image-name-with-digest-file", "", "write REPO@DIGEST for each destination to this file")
	fl.StringVar(&k.nameTagDig, "image-name-tag-with-digest-file", "", "write REPO:TAG@DIGEST for each destination to this file")
	fl.StringArrayVar(&k.buildArgs, "build-arg", nil, "build-time variable KEY=VALUE (repeatable)")
	fl.StringArrayVar(&k.labels, "label", nil, "label KEY=VALUE (repeatable)")
	fl.StringVar(&k.target, "target", "", "stage to build")
	fl.StringVar(&k.platform, "custom-platform", "", "target platform (os/arch[/variant])")
	fl.StringVar(&k.compression, "compression", "gzip", "layer compression: gzip or zstd")
	fl.BoolVar(&k.cache, "cache", false, "use the registry step cache (--cache-repo, else DESTINATION-REPO/cache)")
	fl.StringVar(&k.cacheRepo, "cache-repo", "", "registry repository of the step cache")
	fl.DurationVar(&k.cacheTTL, "cache-ttl", 336*time.Hour, "use only cached RUN results made less than this long ago")
	fl.BoolVar(&k.insecure, "insecure", false, "push to the destinations' registries over plain HTTP")
	fl.BoolVar(&k.insecurePull, "insecure-pull", false, "pull over plain HTTP or without TLS verification")
	fl.BoolVar(&k.skipTLS, "skip-tls-verify", false, "push without TLS verification")
	fl.BoolVar(&k.skipTLSPull, "skip-tls-verify-pull", false, "pull without TLS verification")
	fl.StringArrayVar(&k.insecureRegs, "insecure-registry", nil, "registry to reach over plain HTTP (repeatable)")
	fl.StringArrayVar(&k.skipTLSRegs, "skip-tls-verify-registry", nil, "registry to reach without TLS verification (repeatable)")
	fl.StringArrayVar(&k.mirrors, "registry-mirror", nil, "Docker Hub mirror (host or URL; repeatable)")
	fl.BoolVar(&k.reproducible, "reproducible", false, "strip timestamps (created times and mtimes at the epoch)")
	fl.IntVar(&k.pushRetry, "push-retry", 0, "retries for registry operations")
	fl.StringVarP(&k.verbosity, "verbosity", "v", "info", "log level: panic, fatal, error, warn, info, debug or trace")
	fl.StringVar(&k.logFormat, "log-format", "color", "log format: text, color or json")
	for n, typ := range kanikoNoOps {
		switch typ {
		case "bool":
			fl.Bool(n, false, "kaniko's; no effect in kiln")
		case "array":
			fl.StringArray(n, nil, "kaniko's; no effect in kiln")
		default:
			fl.String(n, "", "kaniko's; no effect in kiln")
		}
		fl.Lookup(n).Hidden = true
	}
	fl.Lookup("ignore-var-run").NoOptDefVal = "true"
	return cmd
}

func runExecutor(cmd *cobra.Command, g *globals, k *kanikoFlags) error {
	if len(k.destinations) == 0 && !k.noPush {
		return fmt.Errorf("you must provide --destination, or use --no-push")
	}
	if len(k.destinations) == 0 && (k.nameDigest != "" || k.nameTagDig != "") {
		return fmt.Errorf("--image-name-with-digest-file and --image-name-tag-with-digest-file need a --destination")
	}
	if err := k.applyGlobals(cmd, g); err != nil {
		return err
	}
	for n := range kanikoNoOps {
		if cmd.Flags().Changed(n) {
			fmt.Fprintf(g.stderr, "kiln executor: --%s has no effect in kiln (no snapshots of a running container to tune)\n", n)
		}
	}
	contextDir, cleanup, err := k.contextDir(cmd.Context(), cmd, g)
	if err != nil {
		return err
	}
	defer cleanup()
	f := &buildFlags{
		tags: k.destinations, buildArgs: k.buildArgs, labels: k.labels, target: k.target,
		platform: k.platform, format: "oci", compression: k.compression, push: !k.noPush,
		digestfile: k.digestFile, cacheTTL: k.cacheTTL, quiet: k.verbosity == "panic" || k.verbosity == "fatal" || k.verbosity == "error",
	}
	if f.file, err = k.dockerfilePath(contextDir); err != nil {
		return err
	}
	if k.reproducible {
		f.timestamp = "0"
	}
	if k.tarPath != "" {
		f.outputs = append(f.outputs, "type=docker,dest="+k.tarPath)
	}
	if k.ociLayoutPath != "" {
		f.outputs = append(f.outputs, "type=oci,dest="+k.ociLayoutPath)
	}
	if k.cache {
		repo, err := k.cacheRepository()
		if err != nil {
			return err
		}
		f.cacheFrom = []string{repo}
		if !k.noPushCache {
			f.cacheTo = []string{repo}
		}
	}
	f.done = k.writeNameFiles
	if k.noPush {
		f.tags = nil // kaniko's --no-push with destinations builds only
		if k.tarPath != "" {
			f.tags = k.destinations // names inside the archive
		}
	}
	f.gitSource = k.gitSource
	return runBuild(cmd.Context(), cmd, g, f, contextDir)
}

// applyGlobals maps kaniko's registry flags onto kiln's shared ones.
func (k *kanikoFlags) applyGlobals(cmd *cobra.Command, g *globals) error {
	switch k.verbosity {
	case "panic", "fatal", "error", "warn", "info", "debug", "trace":
	default:
		return fmt.Errorf("--verbosity %q: want panic, fatal, error, warn, info, debug or trace", k.verbosity)
	}
	switch k.logFormat {
	case "text", "color":
	case "json":
		g.progress = progress.ModeJSON
	default:
		return fmt.Errorf("--log-format %q: want text, color or json", k.logFormat)
	}
	if cmd.Flags().Changed("push-retry") {
		g.retries = k.pushRetry
	}
	g.insecure = append(g.insecure, k.insecureRegs...)
	g.insecure = append(g.insecure, k.skipTLSRegs...)
	if k.insecure || k.skipTLS {
		for _, d := range k.destinations {
			r, err := name.ParseReference(d)
			if err != nil {
				return fmt.Errorf("--destination %s: %w", d, err)
			}
			g.insecure = append(g.insecure, r.Context().RegistryStr())
		}
	}
	if k.insecurePull || k.skipTLSPull {
		if err := cmd.Flags().Set("tls-verify", "false"); err != nil {
			return err
		}
	}
	for _, m := range k.mirrors {
		if !strings.Contains(m, "://") {
			m = "https://" + m
		}
		g.mirrors = append(g.mirrors, m)
	}
	if os.Getenv("DOCKER_CONFIG") == "" {
		if _, err := os.Stat("/kaniko/.docker/config.json"); err == nil {
			os.Setenv("DOCKER_CONFIG", "/kaniko/.docker")
		}
	}
	return nil
}

// contextDir resolves kaniko's --context: a directory (plain or dir://),
// a local tar (tar://) or a git repository (git://), plus
// --context-sub-path.
func (k *kanikoFlags) contextDir(ctx context.Context, cmd *cobra.Command, g *globals) (string, func(), error) {
	c := k.context
	cleanup := func() {}
	scheme, rest, ok := strings.Cut(c, "://")
	if !ok {
		scheme, rest = "dir", c
	}
	switch scheme {
	case "dir":
		c = rest
	case "tar":
		f, err := os.Open(rest)
		if err != nil {
			return "", cleanup, fmt.Errorf("--context %s: %w", k.context, err)
		}
		dir, _, done, err := contextFromStdin(f)
		f.Close()
		if err != nil {
			return "", done, fmt.Errorf("--context %s: %w", k.context, err)
		}
		if dir == "" {
			done()
			return "", cleanup, fmt.Errorf("--context %s: not a tar archive", k.context)
		}
		c, cleanup = dir, done
	case "git":
		gc, err := build.KanikoGitContext(c)
		if err != nil {
			return "", cleanup, err
		}
		dir, done, src, err := fetchGitContext(ctx, cmd, g, gc)
		if err != nil {
			return "", cleanup, err
		}
		k.gitSource = src
		c, cleanup = dir, done
	default:
		return "", cleanup, fmt.Errorf("--context %s: kiln reads directories (dir://), local tar files (tar://) and git repositories (git://), not %s://", k.context, scheme)
	}
	if k.contextSubPath != "" {
		c = filepath.Join(c, filepath.Clean("/"+k.contextSubPath))
	}
	if st, err := os.Stat(c); err != nil || !st.IsDir() {
		cleanup()
		return "", func() {}, fmt.Errorf("--context %s: not a directory", k.context)
	}
	return c, cleanup, nil
}

// dockerfilePath resolves --dockerfile as kaniko does: as given when it
// exists (relative to the working directory), else inside the context.
func (k *kanikoFlags) dockerfilePath(contextDir string) (string, error) {
	if fileExists(k.dockerfile) {
		return k.dockerfile, nil
	}
	p := filepath.Join(contextDir, filepath.Clean("/"+k.dockerfile))
	if !fileExists(p) {
		return "", fmt.Errorf("--dockerfile %s: not found in the working directory or in the context %s", k.dockerfile, contextDir)
	}
	return p, nil
}

// cacheRepository is --cache-repo, or kaniko's default: the first
// destination's repository + "/cache".
func (k *kanikoFlags) cacheRepository() (string, error) {
	if k.cacheRepo != "" {
		return k.cacheRepo, nil
	}
	if len(k.destinations) == 0 {
		return "", fmt.Errorf("--cache needs --cache-repo or a --destination to derive it from")
	}
	r, err := name.ParseReference(k.destinations[0])
	if err != nil {
		return "", fmt.Errorf("--destination %s: %w", k.destinations[0], err)
	}
	return r.Context().Name() + "/cache", nil
}

// writeNameFiles writes kaniko's --image-name-with-digest-file (REPO@DIGEST
// per destination) and --image-name-tag-with-digest-file (REPO:TAG@DIGEST).
func (k *kanikoFlags) writeNameFiles(d v1.Descriptor, _ []string) error {
	var names, tagged strings.Builder
	for _, dst := range k.destinations {
		r, err := name.ParseReference(dst)
		if err != nil {
			return fmt.Errorf("--destination %s: %w", dst, err)
		}
		fmt.Fprintf(&names, "%s@%s\n", r.Context().Name(), d.Digest)
		fmt.Fprintf(&tagged, "%s@%s\n", r.Name(), d.Digest)
	}
	for _, w := range []struct{ path, data string }{{k.nameDigest, names.String()}, {k.nameTagDig, tagged.String()}} {
		if w.path == "" {
			continue
		}
		if err := atomicfile.WriteFile(w.path, []byte(w.data), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", w.path, err)
		}
	}
	return nil
}

// isExecutorName reports whether kiln was invoked as kaniko's binary.
func isExecutorName(argv0 string) bool {
	b := filepath.Base(argv0)
	return b == "executor" || strings.HasPrefix(b, "executor.")
}
