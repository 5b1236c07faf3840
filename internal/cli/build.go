package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"
	"github.com/tonistiigi/go-csvvalue"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/atomicfile"
	"github.com/kiln-build/kiln/pkg/attest"
	"github.com/kiln-build/kiln/pkg/build"
	"github.com/kiln-build/kiln/pkg/cache"
	"github.com/kiln-build/kiln/pkg/platform"
	"github.com/kiln-build/kiln/pkg/progress"
	"github.com/kiln-build/kiln/pkg/sandbox"
	"github.com/kiln-build/kiln/pkg/sign"
	"github.com/kiln-build/kiln/pkg/store"
)

type buildFlags struct {
	tags        []string
	file        string
	buildArgs   []string
	target      string
	labels      []string
	platform    string
	iidfile     string
	quiet       bool
	noCache     bool
	cacheTTL    time.Duration
	cacheFrom   []string
	cacheTo     []string
	secrets     []string
	ssh         []string
	format      string
	timestamp   string
	outputs     []string
	compression string
	push        bool
	digestfile  string
	load        bool
	// metadataFile is buildx's --metadata-file.
	metadataFile string
	// buildx and podman flags (buildx_flags.go).
	pull, network, provenance, sbom, builder string
	layers, squash, squashAll                bool
	driver, creds                            string
	annotations                              []string
	parsedAnnotations                        []build.Annotation
	parsedNetwork                            sandbox.Network
	addHosts, ulimits                        []string
	shmSize                                  string
	runExtras                                sandbox.Extras
	buildContexts                            []string
	namedContexts                            map[string]build.NamedContext
	// done, when set, is called with the stored (and pushed) image's
	// descriptor and full tag names once everything else succeeded.
	done func(d v1.Descriptor, tags []string) error
	// signKey is --sign-key: a cosign key that signs what --push pushes.
	signKey string
	// signMode is --sign-referrers-mode: where --sign-key's signature goes.
	signMode string
	// gitSource is the git context fetched (URL#ref and commit), for
	// provenance.
	gitSource *attest.Material
	// attests are --attest values; attestReq what --sbom, --provenance and
	// --attest ask for (attest.go).
	attests   []string
	attestReq attest.Request
}

func newBuildCommand(g *globals) *cobra.Command {
	var f buildFlags
	cmd := &cobra.Command{
		Use:   "build [flags] CONTEXT",
		Short: "Build an image from a Dockerfile",
		Long: "Build an image from a Dockerfile and a build context (a directory, or - for a tar\n" +
			"stream on stdin). The image goes to the local store, tagged with every -t.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBuild(cmd.Context(), cmd, g, &f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVarP(&f.tags, "tag", "t", nil, "name and optionally a tag (name:tag) for the image (repeatable)")
	fl.StringVarP(&f.file, "file", "f", "", "Dockerfile path, or - for stdin (default: CONTEXT/Dockerfile)")
	fl.StringArrayVar(&f.buildArgs, "build-arg", nil, "build-time variable: KEY=VALUE, or KEY to take the value from the environment (repeatable)")
	fl.StringVar(&f.target, "target", "", "stage to build")
	fl.StringArrayVar(&f.labels, "label", nil, "label KEY=VALUE for the image (repeatable)")
	fl.StringVar(&f.platform, "platform", "", "target platforms, comma separated (linux/amd64,linux/arm64)")
	fl.StringVar(&f.iidfile, "iidfile", "", "write the image ID to this file")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print only the image ID")
	fl.BoolVar(&f.noCache, "no-cache", false, "run every RUN step, neither using nor filling the step cache")
	fl.DurationVar(&f.cacheTTL, "cache-ttl", 0, "use only cached RUN results made less than this long ago (buildah's; e.g. 24h; 0: any age)")
	fl.StringArrayVar(&f.cacheFrom, "cache-from", nil, "also look RUN steps up in this registry repository's step cache (repeatable)")
	fl.StringArrayVar(&f.secrets, "secret", nil, "id=ID,src=FILE or id=ID,env=VAR: a secret for RUN --mount=type=secret (repeatable)")
	fl.StringArrayVar(&f.ssh, "ssh", nil, "default|ID[=SOCKET]: an ssh-agent socket for RUN --mount=type=ssh (default: $SSH_AUTH_SOCK; repeatable)")
	fl.StringArrayVar(&f.cacheTo, "cache-to", nil, "push the step cache entries the build used or made to this registry repository (repeatable)")
	fl.StringVar(&f.format, "format", "oci", "manifest and config format: oci or docker")
	fl.StringVar(&f.timestamp, "timestamp", "", "seconds since the epoch for created times and file mtimes (reproducible builds; default $SOURCE_DATE_EPOCH)")
	fl.StringArrayVarP(&f.outputs, "output", "o", nil, "also write the image (repeatable): type=oci|docker|tar|local,dest=PATH, type=image,name=N[,push=true], type=registry,name=N, PATH (local) or - (tar to stdout)")
	fl.BoolVar(&f.load, "load", false, "buildx's shorthand for type=docker: kiln always keeps the image in its store")
	fl.StringVar(&f.metadataFile, "metadata-file", "", "write buildx's build metadata JSON (containerimage.digest, containerimage.config.digest, image.name, ...) to this file")
	fl.StringVar(&f.compression, "compression", "gzip", "layer compression: gzip or zstd")
	fl.BoolVar(&f.push, "push", false, "push every -t tag to its registry once the image is stored (concurrently)")
	fl.StringVar(&f.digestfile, "digestfile", "", "write the manifest digest (of the image or index) to this file")
	fl.StringVar(&f.signKey, "sign-key", "", "cosign private key that signs what --push pushes (password from COSIGN_PASSWORD)")
	fl.StringVar(&f.signMode, "sign-referrers-mode", "", "with --sign-key: "+referrersModeHelp+" (default legacy)")
	addCompatFlags(fl, &f)
	addStorageOpt(fl, g)
	return cmd
}

// buildRequest is kiln build's flags, parsed and checked: what to build
// (opts, without the context, store, progress and cache that runBuild
// sets up) and where the result goes.
type buildRequest struct {
	opts     build.Options
	outs     buildOutputs
	tags     []string // -t and output names, fully qualified
	push     bool
	signKey  crypto.Signer
	signMode sign.Mode
}

// runBuild is kiln build: flags, one build, its outputs.
func runBuild(ctx context.Context, cmd *cobra.Command, g *globals, f *buildFlags, contextArg string) error {
	// Flags first: nothing is read or written before they all make sense.
	req, err := parseBuild(cmd, g, f)
	if err != nil {
		return err
	}
	cleanup, err := req.readContext(ctx, cmd, g, f, contextArg)
	defer cleanup()
	if err != nil {
		return err
	}
	st, err := g.openStore(ctx, cmd)
	if err != nil {
		return err
	}
	// Steps, their output, notes and warnings go through one progress
	// reporter, in the --progress mode (nothing with -q).
	rep, err := g.reporter(f.quiet)
	if err != nil {
		return err
	}
	defer rep.Close()
	steps := progress.NewSteps(rep)
	req.opts.Store, req.opts.Progress = st, steps
	tiered, err := req.stepCache(cmd, g, f)
	if err != nil {
		return err
	}
	if tiered != nil {
		defer tiered.Wait() // entries fetched are kept in the background
	}
	started := time.Now()
	res, err := build.Build(ctx, req.opts)
	if err != nil {
		return err
	}
	if err := f.attach(res, req.opts, req.tags, started, req.outs.ociArtifact); err != nil {
		return err
	}
	desc, err := st.WriteArtifact(ctx, res.Artifact, store.WithSources(res.Sources))
	if err != nil {
		return fmt.Errorf("saving the image: %w", err)
	}
	if err := exportCache(ctx, tiered, f.cacheTo, steps); err != nil {
		return err
	}
	if err := req.deliver(ctx, cmd, g, f, res, desc); err != nil {
		return err
	}
	fmt.Fprintf(steps.Notes(), "Digest: %s\n", res.Digest)
	names := make([]string, len(req.tags))
	for i, t := range req.tags {
		names[i] = displayRepo(t)
	}
	steps.Result(res.ID.String(), res.Digest.String(), names)
	if !req.outs.stdout {
		fmt.Fprintln(g.stdout, res.ID.String())
	}
	return nil
}

// parseBuild parses and checks build's flags.
func parseBuild(cmd *cobra.Command, g *globals, f *buildFlags) (*buildRequest, error) {
	format, err := build.ParseFormat(f.format)
	if err != nil {
		return nil, err
	}
	comp, err := archive.ParseCompression(f.compression)
	if err != nil {
		return nil, err
	}
	req := &buildRequest{}
	if req.outs, err = parseOutputs(f, g.stdout); err != nil {
		return nil, err
	}
	if c := req.outs.compression; c != "" {
		if cmd.Flags().Changed("compression") && c != f.compression {
			return nil, fmt.Errorf("--output compression=%s and --compression %s disagree", c, f.compression)
		}
		if comp, err = archive.ParseCompression(c); err != nil {
			return nil, err
		}
	}
	if err := req.parseDestinations(cmd, g, f); err != nil {
		return nil, err
	}
	pull, err := f.checkCompat(cmd, g)
	if err != nil {
		return nil, err
	}
	buildArgs, labels, err := parseArgsAndLabels(f)
	if err != nil {
		return nil, err
	}
	var platforms []v1.Platform
	if f.platform != "" {
		for _, p := range strings.Split(f.platform, ",") {
			pl, err := platform.Parse(strings.TrimSpace(p))
			if err != nil {
				return nil, fmt.Errorf("--platform: %w", err)
			}
			platforms = append(platforms, *pl)
		}
	}
	ts, err := timestamp(f.timestamp)
	if err != nil {
		return nil, err
	}
	sshSockets, secrets, err := parseMountFlags(f)
	if err != nil {
		return nil, err
	}
	req.opts = build.Options{
		BuildArgs:     buildArgs,
		Target:        f.target,
		Platforms:     platforms,
		Labels:        labels,
		Format:        format,
		Compression:   comp,
		Timestamp:     ts,
		Registry:      g.registryClient(cmd),
		Isolation:     build.Detect(g.isolation), // detected when a step needs it
		Secrets:       secrets,
		SSH:           sshSockets,
		Pull:          pull,
		Network:       f.parsedNetwork,
		Annotations:   f.parsedAnnotations,
		RunExtras:     f.runExtras,
		NamedContexts: f.namedContexts,
		Squash:        f.squashMode(),
	}
	return req, nil
}

// parseDestinations reads where the image goes: -t and output names,
// --push (checked against the registry flags and the policy) and
// --sign-key.
func (req *buildRequest) parseDestinations(cmd *cobra.Command, g *globals, f *buildFlags) error {
	req.push = f.push || req.outs.push
	if req.push {
		if len(f.tags)+len(req.outs.names) == 0 {
			return errors.New("--push needs at least one -t NAME:TAG to push to")
		}
		if err := g.checkRegistryFlags(cmd); err != nil {
			return err
		}
	}
	for _, t := range append(append([]string(nil), f.tags...), req.outs.names...) {
		r, err := tagRef(t, g)
		if err != nil {
			return fmt.Errorf("-t %s: %w", t, err)
		}
		req.tags = append(req.tags, r.Name())
	}
	if req.push {
		if err := g.checkPushPolicy(req.tags); err != nil {
			return err
		}
	}
	var err error
	req.signKey, req.signMode, err = f.loadSignKey(req.push)
	return err
}

// parseArgsAndLabels reads --build-arg (a name alone takes its value from
// the environment, and is left out when it is not set there, as docker
// does) and --label.
func parseArgsAndLabels(f *buildFlags) (buildArgs, labels map[string]string, err error) {
	buildArgs = map[string]string{}
	for _, a := range f.buildArgs {
		k, v, ok := strings.Cut(a, "=")
		if k == "" {
			return nil, nil, fmt.Errorf("--build-arg %q: missing name", a)
		}
		if !ok {
			ev, set := os.LookupEnv(k)
			if !set {
				continue // docker ignores a name-only build arg that is not set
			}
			v = ev
		}
		buildArgs[k] = v
	}
	labels = map[string]string{}
	for _, l := range f.labels {
		k, v, _ := strings.Cut(l, "=")
		if k == "" {
			return nil, nil, fmt.Errorf("--label %q: missing name", l)
		}
		labels[k] = v
	}
	return buildArgs, labels, nil
}

// parseMountFlags reads --ssh and --secret.
func parseMountFlags(f *buildFlags) (map[string]string, map[string]build.Secret, error) {
	sshSockets := map[string]string{}
	for _, v := range f.ssh {
		id, sock, err := parseSSH(v)
		if err != nil {
			return nil, nil, err
		}
		sshSockets[id] = sock
	}
	secrets := map[string]build.Secret{}
	for _, v := range f.secrets {
		id, sec, err := parseSecret(v)
		if err != nil {
			return nil, nil, err
		}
		secrets[id] = sec
	}
	return sshSockets, secrets, nil
}

// readContext sets the build's context directory and Dockerfile: a
// directory, a git repository (fetched) or - (stdin). cleanup removes what
// it fetched or extracted.
func (req *buildRequest) readContext(ctx context.Context, cmd *cobra.Command, g *globals, f *buildFlags, contextArg string) (cleanup func(), err error) {
	var cleanups []func()
	cleanup = func() {
		for _, c := range cleanups {
			c()
		}
	}
	var stdinUsed bool
	contextDir := contextArg
	var dockerfileFromStdin []byte
	if gc, ok, err := build.ParseGitContext(contextArg); ok {
		if err != nil {
			return cleanup, err
		}
		dir, c, src, err := fetchGitContext(ctx, cmd, g, gc)
		if err != nil {
			return cleanup, err
		}
		cleanups = append(cleanups, c)
		f.gitSource = src
		contextDir = dir
		if f.file != "" && f.file != "-" && !filepath.IsAbs(f.file) {
			f.file = filepath.Join(dir, f.file) // -f names a file of the repository
		}
	}
	if contextArg == "-" {
		stdinUsed = true
		dir, df, c, err := contextFromStdin(g.stdin)
		if err != nil {
			return cleanup, err
		}
		cleanups = append(cleanups, c)
		contextDir, dockerfileFromStdin = dir, df
	}
	o := &req.opts
	o.ContextDir = contextDir
	o.DockerfileName, o.DockerfilePath, o.Dockerfile, err = readDockerfile(f.file, contextDir, g, stdinUsed, dockerfileFromStdin)
	return cleanup, err
}

// stepCache sets the build's step cache (none with --no-cache): the
// store's, in front of the --cache-from and --cache-to repositories when
// there are any (returned, for exportCache).
func (req *buildRequest) stepCache(cmd *cobra.Command, g *globals, f *buildFlags) (*cache.Tiered, error) {
	if f.noCache {
		return nil, nil
	}
	local := cache.NewLocal(req.opts.Store)
	local.TTL = f.cacheTTL
	req.opts.Cache = local
	if len(f.cacheFrom)+len(f.cacheTo) == 0 {
		return nil, nil
	}
	rc, steps := g.registryClient(cmd), req.opts.Progress
	tiered := &cache.Tiered{Local: local, Warnf: func(format string, args ...any) {
		steps.Warnf("", format, args...)
	}}
	for _, s := range f.cacheFrom {
		r, err := cache.ParseRegistry("--cache-from", s, false, rc, req.opts.Store)
		if err != nil {
			return nil, err
		}
		tiered.From = append(tiered.From, r)
	}
	for _, s := range f.cacheTo {
		r, err := cache.ParseRegistry("--cache-to", s, true, rc, req.opts.Store)
		if err != nil {
			return nil, err
		}
		tiered.To = append(tiered.To, r)
	}
	req.opts.Cache, req.opts.CacheCopies = tiered, true
	return tiered, nil
}

// exportCache pushes the step cache entries the build used or made to
// every --cache-to repository.
func exportCache(ctx context.Context, tiered *cache.Tiered, to []string, steps *progress.Steps) error {
	if tiered == nil || len(tiered.To) == 0 {
		return nil
	}
	n, err := tiered.Export(ctx)
	if err != nil {
		if tiered.Strict() {
			return fmt.Errorf("exporting the step cache (ignore-error=true makes this a warning): %w", err)
		}
		steps.Warnf("", "the step cache was not exported in full: %v", err)
	}
	steps.Notef("", "Exported %d step-cache entries to %s", n, strings.Join(to, ", "))
	return nil
}

// deliver gives the stored image its names and sends it everywhere the
// flags asked: tags, --output, --iidfile, --push (and --sign-key),
// --digestfile, --metadata-file.
func (req *buildRequest) deliver(ctx context.Context, cmd *cobra.Command, g *globals, f *buildFlags, res *build.Result, desc v1.Descriptor) error {
	st, logw := req.opts.Store, req.opts.Progress.Notes()
	for _, t := range req.tags {
		if err := st.Tag(t, desc); err != nil {
			return err
		}
		fmt.Fprintf(logw, "Tagged %s\n", displayRepo(t))
	}
	if err := exportBuilt(ctx, req.outs.exporters, res, req.tags, logw); err != nil {
		return err
	}
	if f.iidfile != "" {
		if err := atomicfile.WriteFile(f.iidfile, []byte(res.ID.String()), 0o644); err != nil {
			return fmt.Errorf("--iidfile: %w", err)
		}
	}
	if req.push {
		if err := pushBuilt(ctx, cmd, g, st, desc, req.tags, f.quiet); err != nil {
			return err
		}
		if err := g.signPushed(cmd, req.signKey, req.signMode, desc, req.tags); err != nil {
			return err
		}
	}
	if f.digestfile != "" {
		if err := writeDigestFile(f.digestfile, desc.Digest); err != nil {
			return err
		}
	}
	if f.metadataFile != "" {
		if err := writeMetadata(f.metadataFile, res, desc, req.tags); err != nil {
			return err
		}
	}
	if f.done != nil {
		return f.done(desc, req.tags)
	}
	return nil
}

func timestamp(flag string) (*time.Time, error) {
	v, src := flag, "--timestamp"
	if v == "" {
		v, src = os.Getenv("SOURCE_DATE_EPOCH"), "SOURCE_DATE_EPOCH"
	}
	if v == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("%s=%q: want seconds since the Unix epoch", src, v)
	}
	t := time.Unix(n, 0).UTC()
	return &t, nil
}

// readDockerfile finds the Dockerfile: -f PATH (relative to the working
// directory, as docker does), -f - (stdin), or CONTEXT/Dockerfile (then
// Containerfile, as podman does).
func readDockerfile(flag, contextDir string, g *globals, stdinUsed bool, fromStdin []byte) (name, path string, data []byte, err error) {
	switch {
	case flag == "-":
		if stdinUsed {
			return "", "", nil, errors.New("-f - and a context on stdin (-) cannot both read stdin")
		}
		data, err = io.ReadAll(g.stdin)
		if err != nil {
			return "", "", nil, fmt.Errorf("reading the Dockerfile from stdin: %w", err)
		}
		return "Dockerfile", "", data, nil
	case flag != "":
		return readDockerfileFlag(flag, contextDir)
	case fromStdin != nil:
		return "Dockerfile", "", fromStdin, nil
	}
	rel := "Dockerfile"
	if _, err := os.Lstat(filepath.Join(contextDir, rel)); err != nil && fileExists(filepath.Join(contextDir, "Containerfile")) {
		rel = "Containerfile"
	}
	path = filepath.Join(contextDir, rel)
	data, _, err = build.ReadContextFile(contextDir, rel, maxDockerfileSize)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", "", nil, fmt.Errorf("no Dockerfile at %s (use -f to name one): %w", path, err)
		}
		return "", "", nil, fmt.Errorf("reading the Dockerfile: %w", err)
	}
	return path, path, data, nil
}

// maxDockerfileSize bounds the Dockerfile kiln reads (BuildKit's frontend
// reads it whole too; real ones are a few KiB).
const maxDockerfileSize = 16 << 20

// readDockerfileFlag reads -f PATH: inside the context it is resolved like
// any context file (symlinks cannot leave the context); elsewhere it is
// resolved inside its own directory, as BuildKit reads it.
func readDockerfileFlag(flag, contextDir string) (name, path string, data []byte, err error) {
	root, rel := filepath.Dir(flag), filepath.Base(flag)
	if contextDir != "" {
		if ctx, err1 := filepath.Abs(contextDir); err1 == nil {
			if abs, err2 := filepath.Abs(flag); err2 == nil {
				if r, err3 := filepath.Rel(ctx, abs); err3 == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator)) {
					root, rel = ctx, r
				}
			}
		}
	}
	data, _, err = build.ReadContextFile(root, filepath.ToSlash(rel), maxDockerfileSize)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", "", nil, fmt.Errorf("no Dockerfile at %s: %w", flag, err)
		}
		return "", "", nil, fmt.Errorf("reading the Dockerfile %s: %w", flag, err)
	}
	return flag, flag, data, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// contextFromStdin reads `kiln build -`: a tar stream (plain or
// compressed) becomes the context; anything else is a Dockerfile with no
// context, as with docker.
func contextFromStdin(r io.Reader) (dir string, dockerfile []byte, cleanup func(), err error) {
	cleanup = func() {}
	br := bufio.NewReaderSize(r, 1<<16)
	dr, _, err := archive.Decompress(br)
	if err != nil {
		return "", nil, cleanup, fmt.Errorf("reading the context from stdin: %w", err)
	}
	dbr := bufio.NewReaderSize(dr, 1<<16)
	head, _ := dbr.Peek(512)
	if !archive.IsTar(head) {
		data, err := io.ReadAll(dbr)
		if err != nil {
			return "", nil, cleanup, fmt.Errorf("reading the Dockerfile from stdin: %w", err)
		}
		if len(bytes.TrimSpace(data)) == 0 {
			return "", nil, cleanup, errors.New("stdin is empty: want a tar context or a Dockerfile")
		}
		return "", data, cleanup, nil
	}
	dir, err = os.MkdirTemp("", "kiln-context-")
	if err != nil {
		return "", nil, cleanup, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	if err := archive.Extract(dbr, dir, archive.ExtractOptions{}); err != nil {
		cleanup()
		return "", nil, func() {}, fmt.Errorf("extracting the context from stdin: %w", err)
	}
	return dir, nil, cleanup, nil
}

// parseSecret parses a --secret value as docker buildx and podman do:
// id=ID with src=FILE (or source=, type=file) or env=VAR (type=env); with
// neither, the environment variable named ID if it is set, else the file
// ID. The secret itself is read only when a step mounts it.
func parseSecret(v string) (string, build.Secret, error) {
	var id, src, env, typ string
	fields, err := csvvalue.Fields(v, nil)
	if err != nil {
		return "", build.Secret{}, fmt.Errorf("--secret %q: %w", v, err)
	}
	for _, kv := range fields {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return "", build.Secret{}, fmt.Errorf("--secret %q: want KEY=VALUE fields (id=ID,src=FILE or id=ID,env=VAR)", v)
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "id":
			id = val
		case "src", "source":
			src = val
		case "env":
			env = val
		case "type":
			typ = val
		default:
			return "", build.Secret{}, fmt.Errorf("--secret %q: unknown field %q", v, k)
		}
	}
	if id == "" {
		return "", build.Secret{}, fmt.Errorf("--secret %q: no id", v)
	}
	if typ == "env" && env == "" && src != "" {
		env, src = src, "" // buildx: with type=env, src names the variable
	}
	switch {
	case src != "" && env != "":
		return "", build.Secret{}, fmt.Errorf("--secret %q: src and env cannot both be set", v)
	case typ != "" && typ != "file" && typ != "env":
		return "", build.Secret{}, fmt.Errorf("--secret %q: type must be file or env", v)
	case typ == "env" && env == "":
		env = id
	case src == "" && env == "" && typ != "file":
		if _, set := os.LookupEnv(id); set {
			env = id
		} else {
			src = id
		}
	case src == "" && env == "":
		src = id
	}
	if src != "" {
		fi, err := os.Stat(src)
		if err != nil {
			return "", build.Secret{}, fmt.Errorf("--secret id=%s: %v", id, err)
		}
		if fi.IsDir() {
			return "", build.Secret{}, fmt.Errorf("--secret id=%s: %s is a directory", id, src)
		}
		return id, build.Secret{File: src}, nil
	}
	if _, set := os.LookupEnv(env); !set {
		return "", build.Secret{}, fmt.Errorf("--secret id=%s: environment variable %s is not set", id, env)
	}
	return id, build.Secret{Env: env}, nil
}

// parseSSH parses an --ssh value: ID (the socket in $SSH_AUTH_SOCK) or
// ID=SOCKET, as docker's --ssh; the socket must be an ssh agent's (docker
// also takes key files, which kiln does not: ssh-add them to an agent).
func parseSSH(v string) (string, string, error) {
	id, sock, _ := strings.Cut(v, "=")
	if id == "" {
		return "", "", fmt.Errorf("--ssh %q: no id (use default or ID=SOCKET)", v)
	}
	if sock == "" {
		sock = os.Getenv("SSH_AUTH_SOCK")
		if sock == "" {
			return "", "", fmt.Errorf("--ssh %s: $SSH_AUTH_SOCK is not set (start ssh-agent, or give --ssh %s=SOCKET)", v, id)
		}
	}
	fi, err := os.Stat(sock)
	if err != nil {
		return "", "", fmt.Errorf("--ssh %s: %v", id, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return "", "", fmt.Errorf("--ssh %s: %s is not a socket: kiln forwards ssh-agent sockets (ssh-add the key to an agent and pass its socket)", id, sock)
	}
	return id, sock, nil
}

// frontendFilename is the Dockerfile's name as BuildKit's provenance
// records it (its filename option): relative to the context when it is
// inside it, else its base name; never a local absolute path.
func frontendFilename(path, contextDir string) string {
	if path == "" {
		return "Dockerfile"
	}
	if !filepath.IsAbs(path) {
		return filepath.ToSlash(filepath.Clean(path))
	}
	if contextDir != "" {
		if ctx, err := filepath.Abs(contextDir); err == nil {
			if r, err := filepath.Rel(ctx, path); err == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator)) {
				return filepath.ToSlash(r)
			}
		}
	}
	return filepath.Base(path)
}
