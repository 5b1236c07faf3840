package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/progress"
	"github.com/kiln-build/kiln/pkg/registry"
	"github.com/kiln-build/kiln/pkg/sandbox"
	"github.com/kiln-build/kiln/pkg/sign"
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
	isolation sandbox.Mode // --isolation, parsed by the flag
	jobs      int
	stall     time.Duration
	mirrors   []string
	progress  progress.Mode // --progress, parsed by the flag
	// Limits on what registries, archives and contexts send (limits.go).
	maxManifest, maxConfig string
	maxRatio               int64
	pidsLimit              int64
	diskLimit, diskReserve string
	storageOpts            []string // build's and run's --storage-opt
	// creds are --creds credentials for every registry of the command.
	creds []registry.Credential
	// policy is the registry policy (policy.go).
	policyFlag string
	policy     policyCache
	// client is the command's registry client (registryClient).
	client *registry.Client

	// release undoes a TMPDIR fallback into the store (see tempFallback).
	release []func()

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
	return newRootCommand(&globals{stdin: stdin, stdout: stdout, stderr: stderr})
}

func newRootCommand(g *globals) *cobra.Command {
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
	root.SetIn(g.stdin)
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.root, "root", "", "local image store (default: $KILN_ROOT, else /var/lib/kiln for root, $XDG_DATA_HOME/kiln, ~/.local/share/kiln, $TMPDIR/kiln-UID: the first writable)")
	pf.BoolVar(&g.tlsVerify, "tls-verify", true, "require HTTPS and verify certificates when talking to registries")
	pf.StringVar(&g.authFile, "authfile", "", "credentials file (default: containers auth.json, then docker's config.json; also REGISTRY_AUTH_FILE)")
	pf.StringVar(&g.certDir, "cert-dir", "", "directory of extra CA certificates (*.crt) for registries")
	pf.StringArrayVar(&g.insecure, "insecure-registry", nil, "registry (host[:port]) to reach over plain HTTP or without TLS verification (repeatable)")
	pf.IntVar(&g.retries, "retry", 3, "retries for registry operations on transient errors")
	pf.Var(&typedFlag[sandbox.Mode]{&g.isolation, sandbox.ParseMode, "mode"}, "isolation", "sandbox of RUN steps: auto or one of "+modeNames()+" (see kiln doctor)")
	pf.IntVar(&g.jobs, "jobs", 4, "parallel blob uploads and downloads, and RUN steps run at once")
	pf.DurationVar(&g.stall, "registry-timeout", 2*time.Minute, "give up on (and retry) a registry request that makes no progress for this long")
	pf.StringArrayVar(&g.mirrors, "registry-mirror", nil, "Docker Hub mirror URL, tried before Docker Hub for pulls and base images (repeatable)")
	g.progress = progress.ModeAuto
	pf.Var(&typedFlag[progress.Mode]{&g.progress, progress.ParseMode, "mode"}, "progress", "transfer progress on stderr: auto, tty, plain, json or quiet")
	addLimitFlags(pf, g)
	pf.StringVar(&g.policyFlag, "signature-policy", "", "registry policy: containers policy.json, with kiln-policy.json next to it (default: $KILN_POLICY, ~/.config/containers/policy.json, /etc/containers/policy.json)")

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
		newExecutorCommand(g),
		newDoctorCommand(g),
		newRunCommand(g),
		newManifestCommand(g),
	)
	root.AddCommand(supplyChainCommands(g)...)
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if err := g.applyLimits(); err != nil {
			return err
		}
		return g.tempFallback(cmd)
	}
	root.PersistentPostRun = func(cmd *cobra.Command, args []string) { g.cleanup() }
	return root
}

// tempFallback moves temp files into the store when TMPDIR cannot be
// written (a read-only root filesystem with a volume for the store only).
func (g *globals) tempFallback(cmd *cobra.Command) error {
	if store.TempWritable() {
		return nil
	}
	loc, err := store.Locate(g.root)
	if err != nil {
		return err
	}
	st, err := store.Open(loc.Root)
	if err != nil {
		return err
	}
	rel, err := st.TempFallback()
	if err != nil {
		return fmt.Errorf("%s is not writable, and no temp directory can be made in the store: %w", os.TempDir(), err)
	}
	g.release = append(g.release, rel)
	return nil
}

// cleanup runs the releases registered while a command ran.
func (g *globals) cleanup() {
	for i := len(g.release) - 1; i >= 0; i-- {
		g.release[i]()
	}
	g.release = nil
}

// Execute runs kiln with the process's arguments and returns the exit code.
func Execute(ctx context.Context) int {
	g := &globals{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	cmd := newRootCommand(g)
	if len(os.Args) > 0 && isExecutorName(os.Args[0]) {
		// Invoked as kaniko's /kaniko/executor: its flags, no subcommand.
		cmd.SetArgs(append([]string{"executor"}, os.Args[1:]...))
	}
	err := cmd.ExecuteContext(ctx)
	g.cleanup()
	var exit *ExitCodeError
	if errors.As(err, &exit) {
		return exit.Code // kiln run: the command's own exit code
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %s\n", strings.TrimSpace(err.Error()))
		return 1
	}
	return 0
}

// openStore opens the local store; layers it knows only by their registry
// are fetched from there when read.
func (g *globals) openStore(ctx context.Context, cmd *cobra.Command) (*store.Store, error) {
	loc, err := store.Locate(g.root)
	if err != nil {
		return nil, err
	}
	rc := g.registryClient(cmd)
	return store.Open(loc.Root, store.WithFetcher(func(_ context.Context, repo string, h v1.Hash) (io.ReadCloser, error) {
		return rc.OpenBlob(ctx, repo, h)
	}))
}

// registryClient is the command's registry client, made once from the
// registry flags (registryOptions): its operations share connections,
// credential helper answers and progress.
func (g *globals) registryClient(cmd *cobra.Command) *registry.Client {
	if g.client == nil {
		g.client = registry.New(g.registryOptions(cmd))
	}
	return g.client
}

// registryOptions are the registry flags as registry.Options, for a
// command that adds to them (--creds) before making its client.
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
		Credentials:  append([]registry.Credential(nil), g.creds...),
		Policy:       g.loadPolicy(),
		// policy.json's sigstoreSigned requirements.
		VerifySignatures: sign.PolicyVerifier,
	}
	o.MaxManifestSize, o.MaxConfigSize = g.limitBytes()
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
	if err := g.loadPolicy().Err(); err != nil {
		return err
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

// typedFlag is a flag parsed once, when it is set, into its typed value
// (--isolation a sandbox.Mode, --progress a progress.Mode): a bad value
// fails the command line before anything runs, and the commands read the
// value, never the text.
type typedFlag[T ~string] struct {
	v     *T
	parse func(string) (T, error)
	typ   string // the value's name in --help
}

func (f *typedFlag[T]) Set(s string) error {
	v, err := f.parse(s)
	if err != nil {
		return err
	}
	*f.v = v
	return nil
}

// String is the value, "auto" when it is unset (both flags' default).
func (f *typedFlag[T]) String() string {
	if f.v == nil || *f.v == "" {
		return "auto"
	}
	return string(*f.v)
}

func (f *typedFlag[T]) Type() string { return f.typ }

// modeNames lists the registered isolation modes, for --isolation's help:
// a mode added to pkg/sandbox appears here by itself.
func modeNames() string {
	var names []string
	for _, m := range sandbox.Modes() {
		names = append(names, string(m))
	}
	return strings.Join(names, ", ")
}
