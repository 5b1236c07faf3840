package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/progress"
	"github.com/kiln-build/kiln/pkg/registry"
	"github.com/kiln-build/kiln/pkg/store"
)

// globals are the flags every subcommand shares.
type globals struct {
	root      string
	tlsVerify bool
	authFile  string
	certDir   string
	insecure  []string
	retries   int
	isolation string
	jobs      int
	stall     time.Duration
	mirrors   []string
	progress  string

	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// NewRootCommand builds the kiln command tree on the process's standard
// streams.
func NewRootCommand() *cobra.Command {
	return NewRootCommandIO(os.Stdin, os.Stdout, os.Stderr)
}

// NewRootCommandIO builds the kiln command tree on the given streams.
func NewRootCommandIO(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "kiln",
		Short: "Build, tag and push container images without a daemon or privileges",
		Long: "kiln builds OCI images from Dockerfiles and pushes them to registries, with no daemon\n" +
			"and no privileges. It reads docker's and podman's flags, credentials and Dockerfiles.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionInfo().Version,
	}
	root.SetVersionTemplate(versionInfo().Short() + "\n")
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.root, "root", "", "local image store (default: /var/lib/kiln for root, $XDG_DATA_HOME/kiln otherwise)")
	pf.BoolVar(&g.tlsVerify, "tls-verify", true, "require HTTPS and verify certificates when talking to registries")
	pf.StringVar(&g.authFile, "authfile", "", "credentials file (default: containers auth.json, then docker's config.json; also REGISTRY_AUTH_FILE)")
	pf.StringVar(&g.certDir, "cert-dir", "", "directory of extra CA certificates (*.crt) for registries")
	pf.StringArrayVar(&g.insecure, "insecure-registry", nil, "registry (host[:port]) to reach over plain HTTP or without TLS verification (repeatable)")
	pf.IntVar(&g.retries, "retry", 3, "retries for registry operations on transient errors")
	pf.StringVar(&g.isolation, "isolation", "auto", "sandbox of RUN steps: auto, userns, root, chroot or none (see kiln doctor)")
	pf.IntVar(&g.jobs, "jobs", 4, "parallel blob uploads and downloads")
	pf.DurationVar(&g.stall, "registry-timeout", 2*time.Minute, "give up on (and retry) a registry request that makes no progress for this long")
	pf.StringArrayVar(&g.mirrors, "registry-mirror", nil, "Docker Hub mirror URL, tried before Docker Hub for pulls and base images (repeatable)")
	pf.StringVar(&g.progress, "progress", "auto", "transfer progress on stderr: auto, tty, plain, json or quiet")

	root.AddCommand(
		newBuildCommand(g),
		newImagesCommand(g),
		newTagCommand(g),
		newRmiCommand(g),
		newPruneCommand(g),
		newInspectCommand(g),
		newSaveCommand(g),
		newLoadCommand(g),
		newPushCommand(g),
		newPullCommand(g),
		newCopyCommand(g),
		newLoginCommand(g),
		newLogoutCommand(g),
		newVersionCommand(g),
		newDoctorCommand(g),
	)
	return root
}

// Execute runs kiln with the process's arguments and returns the exit code.
func Execute(ctx context.Context) int {
	cmd := NewRootCommand()
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "Error: %s\n", strings.TrimSpace(err.Error()))
		return 1
	}
	return 0
}

// openStore opens the local store; layers it knows only by their registry
// are fetched from there when read.
func (g *globals) openStore(ctx context.Context, cmd *cobra.Command) (*store.Store, error) {
	root := g.root
	if root == "" {
		root = store.DefaultRoot()
	}
	st, err := store.Open(root)
	if err != nil {
		return nil, err
	}
	ro := g.registryOptions(cmd)
	st.SetFetcher(func(_ context.Context, repo string, h v1.Hash) (io.ReadCloser, error) {
		return registry.OpenBlob(ctx, repo, h, ro)
	})
	return st, nil
}

func (g *globals) registryOptions(cmd *cobra.Command) registry.Options {
	o := registry.Options{
		AuthFile:     g.authFile,
		Insecure:     g.insecure,
		CertDir:      g.certDir,
		Retries:      g.retries,
		Jobs:         g.jobs,
		StallTimeout: g.stall,
		Mirrors:      g.mirrors,
		UserAgent:    "kiln/" + versionInfo().Version,
	}
	if cmd.Flags().Changed("tls-verify") {
		v := g.tlsVerify
		o.TLSVerify = &v
	}
	if g.retries == 0 {
		o.Retries = -1
	}
	return o
}

// reporter is where transfer progress goes: stderr in the --progress
// mode, or nowhere when quiet.
func (g *globals) reporter(quiet bool) (progress.Reporter, error) {
	if quiet {
		return progress.Discard, nil
	}
	return progress.New(g.stderr, g.progress)
}

// checkRegistryFlags validates the registry flags before any work starts.
func (g *globals) checkRegistryFlags(cmd *cobra.Command) error {
	if g.jobs < 1 {
		return fmt.Errorf("--jobs %d: want at least 1", g.jobs)
	}
	if g.stall <= 0 {
		return fmt.Errorf("--registry-timeout %s: want a positive duration", g.stall)
	}
	if g.retries < 0 {
		return fmt.Errorf("--retry %d: want 0 or more", g.retries)
	}
	if _, err := progress.ParseMode(g.progress); err != nil {
		return fmt.Errorf("--progress: %w", err)
	}
	return g.registryOptions(cmd).CheckMirrors()
}

func newVersionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print kiln's version, commit, Go version and platform",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprint(g.stdout, versionInfo().Long())
			return nil
		},
	}
}
