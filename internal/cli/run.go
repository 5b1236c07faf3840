package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/build"
	"github.com/kiln-build/kiln/pkg/platform"
	"github.com/kiln-build/kiln/pkg/sandbox"
	"github.com/kiln-build/kiln/pkg/store"
)

type runFlags struct {
	rm         bool
	env        []string
	volumes    []string
	workdir    string
	user       string
	network    string
	entrypoint string
	pull       string
	quiet      bool
}

// ExitCodeError is a command's exit code that kiln passes on as its own
// (kiln run): nothing is printed for it.
type ExitCodeError struct{ Code int }

func (e *ExitCodeError) Error() string { return fmt.Sprintf("exit code %d", e.Code) }

func newRunCommand(g *globals) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [flags] IMAGE [COMMAND [ARG...]]",
		Short: "Run a command in an image (docker run --rm), in the sandbox RUN steps use",
		Long: "Run the image's command, or COMMAND, in the sandbox RUN steps use, for the smoke tests\n" +
			"pipelines run after a build. stdout and stderr are the command's; kiln exits with its exit\n" +
			"code. The container's writes are discarded when it ends (every run is --rm); the image is\n" +
			"pulled when the store lacks it.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runContainer(cmd.Context(), cmd, g, &f, args[0], args[1:])
		},
	}
	fl := cmd.Flags()
	// docker's flags end at the image: what follows is the command's.
	fl.SetInterspersed(false)
	fl.BoolVar(&f.rm, "rm", true, "remove the container when it exits (always: kiln keeps no containers)")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "KEY=VALUE in the command's environment, or KEY to pass kiln's value (repeatable)")
	fl.StringArrayVarP(&f.volumes, "volume", "v", nil, "HOST:CONTAINER[:ro|rw]: a host file or directory in the container (repeatable)")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working directory in the container (default: the image's WORKDIR)")
	fl.StringVarP(&f.user, "user", "u", "", "user[:group] to run as, names or ids (default: the image's USER)")
	fl.StringVar(&f.network, "network", "host", "network: host (kiln has no bridge) or none (loopback only)")
	fl.StringVar(&f.entrypoint, "entrypoint", "", "replace the image's ENTRYPOINT (and drop its CMD); \"\" clears it")
	fl.StringVar(&f.pull, "pull", "missing", "pull the image: missing, always or never")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no notes and no pull progress on stderr")
	addStorageOpt(fl, g)
	return cmd
}

func runContainer(ctx context.Context, cmd *cobra.Command, g *globals, f *runFlags, image string, args []string) error {
	if !f.rm {
		return fmt.Errorf("--rm=false: kiln keeps no containers; every run is removed when it ends")
	}
	var vols []build.Volume
	for _, v := range f.volumes {
		vol, err := parseVolume(v)
		if err != nil {
			return err
		}
		vols = append(vols, vol)
	}
	var env []string
	for _, e := range f.env {
		k, _, ok := strings.Cut(e, "=")
		if k == "" {
			return fmt.Errorf("-e %q: no variable name", e)
		}
		if !ok {
			v, set := os.LookupEnv(k)
			if !set {
				continue // as docker: an unset KEY is left out
			}
			e = k + "=" + v
		}
		env = append(env, e)
	}
	network, err := sandbox.ParseNetwork(f.network)
	if err != nil || f.network == "" {
		return fmt.Errorf("--network %s: kiln run has host (the default; kiln has no bridge) or none", f.network)
	}
	isolation := g.isolation
	st, err := g.openStore(ctx, cmd)
	if err != nil {
		return err
	}
	img, err := runImage(ctx, cmd, g, st, image, f.pull, f.quiet)
	if err != nil {
		return err
	}
	o := build.ContainerOptions{
		Store: st, Image: img, Isolation: build.Detect(isolation), Cmd: args, Env: env, Workdir: f.workdir, User: f.user,
		Network: network, Volumes: vols, Stdout: g.stdout, Stderr: g.stderr, Log: g.stderr,
	}
	if f.quiet {
		o.Log = io.Discard
	}
	if cmd.Flags().Changed("entrypoint") {
		o.Entrypoint = &f.entrypoint
	}
	code, err := build.RunContainer(ctx, o)
	if err != nil {
		return err
	}
	if code != 0 {
		return &ExitCodeError{Code: code}
	}
	return nil
}

// parseVolume reads -v HOST:CONTAINER[:ro|rw].
func parseVolume(s string) (build.Volume, error) {
	parts := strings.Split(s, ":")
	v := build.Volume{}
	switch len(parts) {
	case 2:
	case 3:
		switch parts[2] {
		case "ro":
			v.ReadOnly = true
		case "rw":
		default:
			return v, fmt.Errorf("-v %s: option %q: kiln takes ro or rw", s, parts[2])
		}
	default:
		return v, fmt.Errorf("-v %s: want HOST:CONTAINER[:ro] (named volumes are docker's; give a host path)", s)
	}
	v.Host, v.Target = parts[0], parts[1]
	if !strings.HasPrefix(v.Host, "/") && !strings.HasPrefix(v.Host, ".") {
		return v, fmt.Errorf("-v %s: %q is not a host path (named volumes are docker's; use /path or ./path)", s, v.Host)
	}
	if !strings.HasPrefix(v.Target, "/") {
		return v, fmt.Errorf("-v %s: the container path %q must be absolute", s, v.Target)
	}
	return v, nil
}

// runImage finds the image to run: the store's (this machine's platform
// from an index), pulled first when missing or with --pull always.
func runImage(ctx context.Context, cmd *cobra.Command, g *globals, st *store.Store, image, pull string, quiet bool) (v1.Image, error) {
	switch pull {
	case "missing", "always", "never":
	default:
		return nil, fmt.Errorf("--pull %s: want missing, always or never", pull)
	}
	d, _, err := resolveLocal(st, g, image)
	if pull == "always" || (err != nil && pull == "missing") {
		if err != nil && !quiet {
			fmt.Fprintf(g.stderr, "Unable to find image '%s' locally\n", image)
		}
		// The pull's own output goes to stderr: stdout is the command's.
		stdout := g.stdout
		g.stdout = g.stderr
		perr := runPull(ctx, cmd, g, &pullFlags{quiet: quiet}, image)
		g.stdout = stdout
		if perr != nil {
			return nil, perr
		}
		d, _, err = resolveLocal(st, g, image)
	}
	if err != nil {
		return nil, err
	}
	if d.MediaType.IsIndex() {
		idx, err := st.Index(d.Digest)
		if err != nil {
			return nil, err
		}
		return hostImage(idx, image)
	}
	return st.Image(d.Digest)
}

// hostImage picks this machine's platform from an index.
func hostImage(idx v1.ImageIndex, name string) (v1.Image, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	host := platform.Default()
	for _, d := range m.Manifests {
		if d.Platform != nil && platform.Matches(*d.Platform, host) && d.MediaType.IsImage() {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("%s has no image for %s/%s", name, host.OS, host.Architecture)
}
