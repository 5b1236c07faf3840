package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/cache"
	"github.com/kiln-build/kiln/pkg/dockerfile"
	"github.com/kiln-build/kiln/pkg/oci"
	plat "github.com/kiln-build/kiln/pkg/platform"
	"github.com/kiln-build/kiln/pkg/progress"
	"github.com/kiln-build/kiln/pkg/registry"
	"github.com/kiln-build/kiln/pkg/sandbox"
	"github.com/kiln-build/kiln/pkg/store"
)

// Options describe one build.
type Options struct {
	// ContextDir is the build context directory.
	ContextDir string
	// Dockerfile is the Dockerfile's content; DockerfileName is how errors
	// name it and DockerfilePath where it lives on disk ("" when it came from
	// stdin), used to find "<Dockerfile>.dockerignore".
	Dockerfile     []byte
	DockerfileName string
	DockerfilePath string
	// BuildArgs are --build-arg values.
	BuildArgs map[string]string
	// Target is the stage to build ("" = the last).
	Target string
	// Platforms to build for; empty means the host's. More than one gives an
	// image index.
	Platforms []v1.Platform
	// Labels are --label values, set on the final image.
	Labels map[string]string
	// Format of manifests and configs.
	Format Format
	// Compression of new layers.
	Compression archive.Compression
	// Timestamp, when set, is used for every created time and every mtime
	// in new layers, so that builds are reproducible.
	Timestamp *time.Time
	// Store receives every new layer blob and provides local base images.
	Store *store.Store
	// Registry is how base images are pulled (a client with the default
	// Options when nil); its Options' Jobs bounds parallel layer work.
	Registry *registry.Client
	// HTTPClient fetches ADD URLs (http.DefaultClient when nil).
	HTTPClient *http.Client
	// Progress receives the build's events: steps, their output, notes,
	// warnings (pkg/progress renders them as a terminal view, plain lines
	// or JSON). When nil, they go to Log as plain lines.
	Progress *progress.Steps
	// Log receives plain progress lines when Progress is nil; nil discards
	// them.
	Log io.Writer
	// Isolation is how RUN steps are isolated: a mode detected when a
	// step first needs a sandbox (Detect; zero: the best that works), or
	// a sandbox already detected (Use).
	Isolation Isolation
	// CacheCopies also caches COPY and ADD layers by their content (set
	// when the step cache is shared through a registry: a fresh checkout
	// then reuses the layers, old mtimes included, and pushes skip them).
	CacheCopies bool
	// Secrets are what RUN --mount=type=secret may mount, by id.
	Secrets map[string]Secret
	// SSH are the ssh-agent sockets RUN --mount=type=ssh may mount, by id
	// ("default" when the mount names none).
	SSH map[string]string
	// Cache, when set, is the step cache: a RUN step whose key (see
	// runStep) it holds is not run, its cached layer is used; a step
	// that runs is added to it. nil (--no-cache) runs every step.
	Cache StepCache
	// Pull is the base-image pull policy: PullMissing (the default: a base
	// the store holds is used, else it is read from its registry),
	// PullAlways (always from the registry: docker build --pull),
	// PullNever (only the store) or PullNewer (the registry, the store's
	// copy when the registry cannot be reached).
	Pull PullPolicy
	// Network is the network of RUN steps that do not say (--network of
	// docker build, sandbox.ParseNetwork): "" or sandbox.NetworkDefault
	// (the sandbox's default), sandbox.NetworkHost or sandbox.NetworkNone.
	Network sandbox.Network
	// RunExtras are --add-host, --ulimit and --shm-size for every RUN
	// step; they are part of the steps' cache keys.
	RunExtras sandbox.Extras
	// NamedContexts are buildx's --build-context values, by name
	// (named_context.go).
	NamedContexts map[string]NamedContext
	// Annotations are buildx's --annotation values (annotate.go).
	Annotations []Annotation
	// Squash makes the image's new layers, or all, one (squash.go).
	Squash Squash
}

// PullPolicy says where base images come from (see Options.Pull).
type PullPolicy string

// The pull policies podman's --pull names (docker's --pull is PullAlways).
const (
	PullMissing PullPolicy = "missing"
	PullAlways  PullPolicy = "always"
	PullNever   PullPolicy = "never"
	PullNewer   PullPolicy = "newer"
)

// ParsePullPolicy reads podman's and docker's --pull values: always, true
// (docker's --pull), missing, false, never, newer.
func ParsePullPolicy(s string) (PullPolicy, error) {
	switch strings.ToLower(s) {
	case "", "missing", "false", "ifmissing":
		return PullMissing, nil
	case "always", "true":
		return PullAlways, nil
	case "never":
		return PullNever, nil
	case "newer", "ifnewer":
		return PullNewer, nil
	}
	return "", fmt.Errorf("--pull=%s: want always, missing, never or newer", s)
}

// StepCache keeps step results by cache key (pkg/cache.Local is one).
type StepCache interface {
	// Get returns the entry for key, or nil on a miss.
	Get(ctx context.Context, key string) (*cache.Entry, error)
	// Put stores an entry whose layer is already in the build's store.
	Put(ctx context.Context, key string, e cache.Entry) error
}

// Result is what a build produced.
type Result struct {
	// Artifact is the built image (a single-platform build) or image
	// index (a multi-platform one).
	Artifact oci.Artifact
	// Digest is the manifest (or index) digest.
	Digest v1.Hash
	// ID is the image ID (config digest, as docker and podman show it; the
	// index digest for a multi-platform build).
	ID v1.Hash
	// Sources maps the base layers that were never downloaded to the
	// repository that serves them (see store.WithSources).
	Sources map[v1.Hash]string
	// Materials are the images the build read (materials.go).
	Materials []Material
}

// Build runs a build.
func Build(ctx context.Context, opts Options) (*Result, error) {
	if opts.Store == nil {
		return nil, errors.New("build: no store")
	}
	if opts.Format == "" {
		opts.Format = FormatOCI
	}
	if opts.Compression == "" {
		opts.Compression = archive.Gzip
	}
	if opts.DockerfileName == "" {
		opts.DockerfileName = "Dockerfile"
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = http.DefaultClient
	}
	if opts.Registry == nil {
		opts.Registry = registry.New(registry.Options{})
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if err := checkAnnotations(opts.Annotations, opts.Format, len(opts.Platforms) > 1); err != nil {
		return nil, err
	}
	if opts.Progress == nil {
		rep, _ := progress.New(opts.Log, progress.ModePlain)
		opts.Progress = progress.NewSteps(rep)
	}
	// Parse once up front so that syntax errors come before any work.
	f, err := dockerfile.Parse(opts.DockerfileName, opts.Dockerfile)
	if err != nil {
		return nil, err
	}
	for _, w := range f.Warnings {
		opts.Progress.Warnf("", "%s", w)
	}
	ctxSrc, err := openContext(opts.ContextDir, opts.DockerfilePath)
	if err != nil {
		return nil, err
	}
	// Platforms as BuildKit writes them (linux/arm64, not linux/arm64/v8),
	// in TARGETPLATFORM and in the configs.
	opts.Platforms = append([]v1.Platform(nil), opts.Platforms...)
	for i, p := range opts.Platforms {
		opts.Platforms[i] = plat.Normalize(p)
	}
	platforms := opts.Platforms
	if len(platforms) == 0 {
		platforms = []v1.Platform{plat.Default()}
	}
	b := &builder{ctx: ctx, opts: opts, ctxSrc: ctxSrc, layerSem: make(chan struct{}, maxLayerWriters), indexingSem: make(chan struct{}, writersWhileIndexing()), start: time.Now().UTC(), images: map[string]*imageSource{}}
	b.replaced = b.replacedStages(f)
	defer b.run.close()
	defer b.saveSums()
	defer b.saveAnswers()
	if opts.Timestamp != nil {
		b.start = opts.Timestamp.UTC()
	}
	// Every platform's RUN steps that need an emulator are checked before
	// the first platform is built.
	for _, p := range platforms {
		if len(platforms) == 1 {
			break // buildPlatform checks, before any work too
		}
		_, plan, err := b.plan(p)
		if err != nil {
			return nil, err
		}
		if planRun(plan) != nil {
			if err := b.checkRunPlatforms(plan, p); err != nil {
				return nil, err
			}
		}
	}
	var images []v1.Image
	for _, p := range platforms {
		img, err := b.buildPlatform(ctx, p)
		if err != nil {
			return nil, err
		}
		images = append(images, annotateImage(img, p, opts.Annotations))
	}
	if len(images) == 1 && len(opts.Platforms) <= 1 {
		d, err := images[0].Digest()
		if err != nil {
			return nil, err
		}
		id, err := images[0].ConfigName()
		if err != nil {
			return nil, err
		}
		return &Result{Artifact: images[0], Digest: d, ID: id, Sources: b.sources, Materials: b.materials()}, nil
	}
	idx, err := newIndex(images, platforms, opts.Format)
	if err != nil {
		return nil, err
	}
	if err := idx.annotate(opts.Annotations); err != nil {
		return nil, err
	}
	d, err := idx.Digest()
	if err != nil {
		return nil, err
	}
	return &Result{Artifact: idx, Digest: d, ID: d, Sources: b.sources, Materials: b.materials()}, nil
}

type builder struct {
	// ctx outlives every stage: lazy base layers fetched after the build
	// (when the image is stored or pushed) use it.
	ctx    context.Context
	opts   Options
	ctxSrc *contextSource
	start  time.Time

	mu       sync.Mutex
	images   map[string]*imageSource // COPY --from images and bases, by ref+platform
	noted    map[string]bool         // base references already given the unpinned notice
	layerSem chan struct{}           // bounds concurrent layer writers
	// indexingSem bounds them further while a base index is being
	// made (layer.go).
	indexingSem chan struct{}
	// finalBase is the image the target stage starts from (materials.go).
	finalBase string
	// sources: registry layers by digest -> repository
	sources map[v1.Hash]string
	// run is the sandbox and unpacked-layer store of RUN steps (run.go).
	run runEnv
	// emulators: whether RUN can run each foreign platform's programs
	// (binfmt.go), found once per build.
	emuMu     sync.Mutex
	emulators map[string]error
	// indexes are the layer path indexes at hand (index.go); bg counts
	// the indexes being made in the background (speculate.go).
	indexes layerIndexes
	bg      sync.WaitGroup
	// fileSums are the store's digests of context files (copy_cache.go).
	sumsOnce sync.Once
	fileSums *cache.FileSums
	// keyed: stages keep chain keys (chain.go) for the step cache; set
	// per platform when there is a cache and a RUN step.
	keyed bool
	// replaced are the stages named contexts replace (named_context.go).
	replaced map[string]bool
}

// entryTime dates the entries a build makes up itself (WORKDIR
// directories, heredoc files, created destinations): --timestamp when
// given, else the Unix epoch, so that the same step gives the same layer
// in every build and an unchanged layer is never pushed twice.
func (b *builder) entryTime() time.Time {
	if b.opts.Timestamp != nil {
		return b.opts.Timestamp.UTC()
	}
	return time.Unix(0, 0).UTC()
}

// plan parses the Dockerfile and plans it for one target platform. Each
// platform gets its own parse: instruction Expand methods work in place.
func (b *builder) plan(platform v1.Platform) (*dockerfile.File, *dockerfile.Plan, error) {
	f, err := dockerfile.Parse(b.opts.DockerfileName, b.opts.Dockerfile)
	if err != nil {
		return nil, nil, err
	}
	plan, err := f.Plan(dockerfile.PlanOptions{
		BuildArgs:      b.opts.BuildArgs,
		Target:         b.opts.Target,
		TargetPlatform: platform,
		BuildPlatform:  plat.Default(),
		Replaced:       b.replaced,
	})
	return f, plan, err
}

// buildPlatform runs the plan for one target platform.
func (b *builder) buildPlatform(ctx context.Context, platform v1.Platform) (v1.Image, error) {
	f, plan, err := b.plan(platform)
	if err != nil {
		return nil, err
	}
	if err := checkSupported(plan); err != nil {
		return nil, err
	}
	if err := b.checkPolicy(plan); err != nil {
		return nil, err
	}
	b.noteBase(plan)
	// The sandbox is only looked for when a needed stage has RUN (and then
	// up front, so that a build that cannot RUN fails before any work).
	if line := planRun(plan); line != nil {
		if _, err := b.runEnv(ctx); err != nil {
			return nil, plan.File.Errorf(line, "RUN: %v", err)
		}
		if err := b.checkRunPlatforms(plan, platform); err != nil {
			return nil, err
		}
	}
	b.keyed = b.opts.Cache != nil && planRun(plan) != nil
	if len(plan.UnusedBuildArgs) > 0 && plat.Format(platform) == plat.Format(b.firstPlatform()) {
		// docker's wording (proxy variables are never reported).
		b.opts.Progress.Notef("", "[Warning] One or more build-args %v were not consumed", plan.UnusedBuildArgs)
	}

	// Background work (indexes made while stages guess) ends with the
	// platform's context: cancelled first, then waited for.
	defer b.bg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	states := map[*dockerfile.Stage]*stageRun{}
	for _, s := range plan.Order {
		states[s] = &stageRun{stage: s, done: make(chan struct{})}
	}
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	for _, s := range plan.Order {
		run := states[s]
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(run.done)
			for _, d := range s.Deps {
				select {
				case <-states[d].done:
					if states[d].err != nil {
						run.err = errDependency
						return
					}
				case <-ctx.Done():
					run.err = ctx.Err()
					return
				}
			}
			st := &stageState{b: b, plan: plan, file: f, run: run, states: states, platform: platform, target: s == plan.Target}
			run.result, run.err = st.executeChecked(ctx)
			if run.err != nil {
				errOnce.Do(func() { firstErr = run.err; cancel() })
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b.opts.Squash != SquashNone {
		return b.squash(ctx, states[plan.Target].result)
	}
	return states[plan.Target].result.image, nil
}

var errDependency = errors.New("a stage this one depends on failed")

func (b *builder) firstPlatform() v1.Platform {
	if len(b.opts.Platforms) > 0 {
		return b.opts.Platforms[0]
	}
	return plat.Default()
}

// planRun locates the first RUN of the stages a plan needs (nil: none).
func planRun(plan *dockerfile.Plan) []parser.Range {
	for _, s := range plan.Order {
		for _, c := range s.Commands {
			if r, ok := c.(*instructions.RunCommand); ok {
				return r.Location()
			}
		}
	}
	return nil
}

// checkSupported refuses, before any work, instructions this build cannot
// execute.
func checkSupported(plan *dockerfile.Plan) error {
	for _, s := range plan.Order {
		for _, c := range s.Commands {
			if r, ok := c.(*instructions.RunCommand); ok && instructions.GetSecurity(r) == "insecure" {
				return plan.File.Errorf(r.Location(), "RUN --security=insecure is not supported (stage %s)", stageLabel(s))
			}
		}
	}
	return nil
}

func stageLabel(s *dockerfile.Stage) string {
	if s.Name != "" {
		return fmt.Sprintf("%q", s.Name)
	}
	return fmt.Sprintf("#%d", s.Index)
}

// stageRun is the outcome of one stage, awaited by the stages that depend
// on it.
type stageRun struct {
	stage  *dockerfile.Stage
	done   chan struct{}
	result *stageResult
	err    error
}

// stageResult is a finished stage.
type stageResult struct {
	image v1.Image
	// layers of the image, bottom first, with their origin: a stage built
	// on another keeps knowing which of its layers this build made.
	layers []v1.Layer
	cfg    *v1.ConfigFile
	known  *knownTree
	// links name how its filesystem was made (chain.go; when keyed).
	links []chainLink
	// source reads the stage's files for COPY --from (lazily, once).
	source *imageSource
	// extLayers and extHistory count the layers and history entries that
	// came from the image the stage (or the stage it is built on) starts
	// from, not from this build (squash.go).
	extLayers, extHistory int
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var _ = partial.Descriptor
