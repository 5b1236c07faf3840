package build

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/cache"
	"github.com/kiln-build/kiln/pkg/rootfs"
	"github.com/kiln-build/kiln/pkg/sandbox"
	"github.com/kiln-build/kiln/pkg/store"
)

// runEnv is the build's RUN machinery, set up by the first RUN step.
type runEnv struct {
	once  sync.Once
	sb    *sandbox.Sandbox
	store *rootfs.Store
	err   error

	mu     sync.Mutex
	copies map[*stageState]*workCopy // working copies (no overlay)
	temps  []string
	// stopTrash stops the background removal of discarded working copies.
	stopTrash func()

	// slots bounds the RUN steps (sandboxes) that run at once: --jobs.
	slots chan struct{}
}

// workCopy is a stage's materialised root filesystem where no overlay can
// be mounted: layers applied in order, and the snapshot of its metadata
// that the next step's diff compares with.
type workCopy struct {
	dir     string // the root filesystem
	snap    string // snapshot file
	applied int    // how many of the stage's layers it holds
}

// runEnv sets up (once) the sandbox and the unpacked-layer store.
func (b *builder) runEnv(ctx context.Context) (*runEnv, error) {
	r := &b.run
	r.once.Do(func() {
		jobs := b.opts.Registry.Options().Jobs
		if jobs < 1 {
			jobs = 4
		}
		r.slots = make(chan struct{}, jobs)
		sb, detected, err := b.opts.Isolation.sandbox(ctx, filepath.Join(b.opts.Store.Root(), "rootfs"))
		if err != nil {
			r.err = err
			return
		}
		r.sb = sb
		if detected {
			b.opts.Progress.Notef("", "%s", sb.Summary())
		}
		if w := r.sb.Warning(); w != "" {
			b.opts.Progress.Warnf("", "%s", w)
		}
		if r.sb.Mode() == sandbox.ModeNone {
			return
		}
		r.store, r.err = rootfs.Open(filepath.Join(b.opts.Store.Root(), "rootfs"))
		if r.err == nil {
			r.emptyTrash()
		}
	})
	if r.err != nil {
		return nil, r.err
	}
	if r.sb.Mode() == sandbox.ModeNone {
		return nil, fmt.Errorf("RUN needs an isolation mode, and none works here: %s (run `kiln doctor` for what is missing and how to fix it)", r.sb.Reason())
	}
	return r, nil
}

// emptyTrash removes, in the background while this build runs, the
// working copies earlier builds discarded; close stops it.
func (r *runEnv) emptyTrash() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = r.store.EmptyTrash(ctx, r.sb)
	}()
	r.stopTrash = func() {
		cancel()
		<-done
	}
}

// close removes what the build's RUN steps left behind. Working copies
// are only moved to the trash (a rename): deleting their files would take
// as long as the step took to write them; a later build or kiln prune
// deletes them.
func (r *runEnv) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopTrash != nil {
		r.stopTrash()
		r.stopTrash = nil
	}
	ctx := context.Background()
	var temps []string
	for _, wc := range r.copies {
		t := filepath.Dir(wc.dir)
		if r.store == nil || r.store.Discard(r.sb.Key(), t) != nil {
			temps = append(temps, t)
		}
	}
	r.copies = nil
	for _, t := range append(temps, r.temps...) {
		if r.sb != nil {
			_ = r.sb.Remove(ctx, t)
		} else {
			os.RemoveAll(t)
		}
	}
	r.temps = nil
}

// doRun runs a RUN step and adds its changes as a layer: the instruction
// is parsed into a step (run_step.go), looked up in the step cache by the
// step's key and, on a miss, executed (execRun) and cached.
func (s *stageState) doRun(ctx context.Context, c *instructions.RunCommand, loc []parser.Range) error {
	defer s.cleanTemp() // context views of bind mounts
	stepStart := time.Now()
	st, err := s.parseRun(c, loc)
	if err != nil {
		return err
	}
	r, err := s.b.runEnv(ctx)
	if err != nil {
		return s.runErrf(st, "%v", err)
	}
	// The layers below must be complete to be unpacked.
	if err := s.waitLayers(); err != nil {
		return err
	}
	st.below, st.OneID = s.layers, r.sb.SingleMapping()
	var key string
	if s.b.keyed {
		if key, err = s.runKey(ctx, st); err != nil {
			// The cache is an optimisation: run the step without it.
			s.b.opts.Progress.Warnf(s.stageTag()+" "+st.label, "step cache: no key (%v); running the step", err)
			key = ""
		}
		if hit, err := s.cachedRun(ctx, key, st.label, st.createdBy); err != nil || hit {
			return err
		}
	}
	var cleanup stepCleanup
	// After the step is logged done: removing its temporary directory
	// is not the step's time.
	defer cleanup.run()
	res, err := s.execRun(ctx, r, st, &cleanup)
	if err != nil {
		return err
	}
	s.layers = append(s.layers, res.layer)
	s.b.opts.Progress.Notef(s.stageTag()+" "+st.label, "RUN done in %s (command %s, diff and layer %s, %d entries)", fmtMS(time.Since(stepStart)), fmtMS(res.command), fmtMS(res.diff), len(res.hdrs))
	if key != "" {
		s.links = append(s.links, chainLink{key: "run " + key})
		if err := s.b.opts.Cache.Put(ctx, key, cache.Entry{Layer: res.layer, Headers: res.hdrs, CreatedBy: st.createdBy}); err != nil {
			s.b.opts.Progress.Warnf(s.stageTag()+" "+st.label, "step cache: %v", err)
		}
	}
	if res.exact && s.readByOthers() {
		// COPY --from this stage, or a stage on it, looks its files up
		// in its layers' indexes: this one is the headers the layer was
		// written with, not a second read (inflate and two hashes) of a
		// layer just written.
		if d, err := res.layer.DiffID(); err == nil {
			s.b.haveIndex(headersIndex(d, res.hdrs))
		}
	}
	// After the cache and the index took the entries with their names:
	// the known tree takes the headers over.
	s.noteRunEntries(res.hdrs)
	s.users = nil
	s.history(st.createdBy, false)
	return nil
}

// runResult is what an executed step made.
type runResult struct {
	layer v1.Layer
	hdrs  []*tar.Header // the layer's entries
	// exact: hdrs are the layer's headers as its tar holds them (the
	// sandbox's diff taken as it is), not the headers before --timestamp
	// rewrote them.
	exact bool
	// command is how long the command ran, diff how long the layer took.
	command, diff time.Duration
}

// stepCleanup removes what a step made for its run (its temporary
// directory, the files of its secrets and script), last made first.
type stepCleanup []func()

func (c *stepCleanup) add(f func()) { *c = append(*c, f) }

func (c *stepCleanup) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
	*c = nil
}

// execRun executes the step on the layers below it. It reads the step
// only (and, by the ids the step's mounts name, the build's secrets and
// ssh agents, which are not keyed). What it leaves to remove is added to
// cleanup.
func (s *stageState) execRun(ctx context.Context, r *runEnv, st *runStep, cleanup *stepCleanup) (*runResult, error) {
	// A step for another platform runs through a binfmt_misc emulator.
	if err := s.b.canRun(st.Platform.v1()); err != nil {
		return nil, s.runErrf(st, "%v", err)
	}
	layers, err := s.rootfsLayers(st.below)
	if err != nil {
		return nil, s.runErrf(st, "%v", err)
	}
	note := func(n string) { s.b.opts.Progress.Notef(s.stageTag(), "note: %s", n) }
	step, release, err := s.sandboxStep(ctx, r, st, note)
	if err != nil {
		return nil, s.runErrf(st, "%v", err)
	}
	cleanup.add(release)
	// At most --jobs steps run (and unpack and diff) at once; taken only
	// now, once every stage this step mounts is done, so it never waits
	// for a stage while holding a slot.
	select {
	case r.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-r.slots }()
	out := s.b.opts.Progress.Output(s.stageTag() + " " + st.label)
	step.Stdout, step.Stderr = out, out
	root, err := s.stepRoot(ctx, r, st, layers, note, &step)
	if err != nil {
		return nil, s.runErrf(st, "%v", err)
	}
	cleanup.add(root.remove)
	res, err := r.sb.Run(ctx, step)
	out.Flush()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, s.runErrf(st, "%v", err)
	}
	for _, n := range res.Notes {
		note(n)
	}
	if res.ExitCode != 0 {
		how := fmt.Sprintf("exit code %d", res.ExitCode)
		if res.Signal != "" {
			how = "killed by " + res.Signal
		}
		return nil, s.runErrf(st, "process %q did not complete successfully: %s", sandbox.CommandString(st.Args), how)
	}
	diffStart := time.Now()
	made, err := s.runLayer(ctx, r, st, layers, root, res)
	if err != nil {
		return nil, s.runErrf(st, "%v", err)
	}
	made.command, made.diff = res.Command, time.Since(diffStart)
	return made, nil
}

// sandboxStep is what the sandbox runs for the step, but its root
// filesystem; release removes the files made for it (secrets, script).
func (s *stageState) sandboxStep(ctx context.Context, r *runEnv, st *runStep, note func(string)) (sandbox.Step, func(), error) {
	step := sandbox.Step{Args: st.Args, Env: st.Env, User: runUser(st.User), Cwd: st.Cwd, Network: st.Network}
	if st.Extras != nil {
		step.Extras = *st.Extras
	}
	release := func() {}
	var secrets string
	if st.hasSecretMount() || st.script != nil {
		var err error
		if secrets, release, err = s.b.opts.Store.ShortLivedDir(); err != nil {
			return step, nil, err
		}
	}
	mounts, secretEnv, err := s.stepMounts(ctx, r, st, note, secrets)
	if err != nil {
		release()
		return step, nil, err
	}
	if st.script != nil {
		m, err := scriptMount(st.script, secrets)
		if err != nil {
			release()
			return step, nil, err
		}
		mounts = append(mounts, m)
	}
	step.Mounts = mounts
	// Secret variables go to the step only: not in the cache key, the
	// history or the image. So do proxy --build-args (proxy.go).
	step.Env = withEnv(append(append([]string(nil), step.Env...), secretEnv...), st.proxyEnv)
	return step, release, nil
}

// stepRootDir is where a step runs: an overlay's upper directory over the
// unpacked layers, or the stage's working copy (no overlay).
type stepRootDir struct {
	wc     *workCopy // nil with overlay
	tmp    string    // the step's temporary directory
	remove func()
}

// stepRoot prepares the step's root filesystem and sets it in step.
func (s *stageState) stepRoot(ctx context.Context, r *runEnv, st *runStep, layers []rootfs.Layer, note func(string), step *sandbox.Step) (*stepRootDir, error) {
	if !r.sb.Overlay() {
		wc, err := s.workCopy(ctx, r, layers, note)
		if err != nil {
			return nil, err
		}
		tmp, err := os.MkdirTemp(filepath.Dir(wc.dir), "run-")
		if err != nil {
			return nil, err
		}
		step.Dir, step.TempDir = wc.dir, tmp
		return &stepRootDir{wc: wc, tmp: tmp, remove: func() { os.RemoveAll(tmp) }}, nil
	}
	before := r.store.Unpacked()
	started := time.Now()
	lowers, err := r.store.Prepare(ctx, r.sb, layers, note)
	if err != nil {
		return nil, err
	}
	if n := r.store.Unpacked() - before; n > 0 {
		s.b.opts.Progress.Notef(s.stageTag()+" "+st.label, "unpacked %d layer(s) in %s", n, time.Since(started).Round(time.Millisecond))
	}
	tmp, err := r.store.TempDir(r.sb.Key(), "run-")
	if err != nil {
		return nil, err
	}
	step.Lowers, step.TempDir = lowers, tmp
	remove := func() {
		// Once the upper directory is committed, what is left is small
		// (overlay's work directory, mount points, resolver files): it
		// goes to the trash, a rename, for a later build or kiln prune
		// to delete, rather than a helper started now to delete it.
		if _, err := os.Lstat(sandbox.UpperDir(tmp)); errors.Is(err, os.ErrNotExist) && r.store.Discard(r.sb.Key(), tmp) == nil {
			return
		}
		_ = r.sb.Remove(context.WithoutCancel(ctx), tmp)
	}
	return &stepRootDir{tmp: tmp, remove: remove}, nil
}

// runLayer writes what the step changed as its layer: the overlay's upper
// directory (then committed to the rootfs store as the unpacked layer of
// the new chain), or the working copy's difference from its snapshot.
func (s *stageState) runLayer(ctx context.Context, r *runEnv, st *runStep, layers []rootfs.Layer, root *stepRootDir, res *sandbox.StepResult) (*runResult, error) {
	out := &runResult{}
	write := func(normal bool, fill func(w io.Writer) error) (err error) {
		out.layer, err = s.writeTarLayer(ctx, st.layerSpec, normal, fill, func(h *tar.Header) { out.hdrs = append(out.hdrs, h) })
		if err != nil {
			return fmt.Errorf("writing the layer: %v", err)
		}
		return nil
	}
	if wc := root.wc; wc != nil {
		next := wc.snap + ".next"
		err := write(false, func(w io.Writer) error {
			_, err := r.sb.WalkDiff(ctx, wc.dir, wc.snap, next, walkExclude(nil), res.Created, w)
			return err
		})
		if err != nil {
			return nil, err
		}
		if err := os.Rename(next, wc.snap); err != nil {
			return nil, err
		}
		wc.applied = len(st.below) + 1
		return out, nil
	}
	upper := sandbox.UpperDir(root.tmp)
	// The sandbox writes the upper directory's diff in normal form: the
	// layer is that stream as it is, but with --timestamp's mtimes.
	err := write(true, func(w io.Writer) error {
		_, err := r.sb.UpperDiff(ctx, upper, nil, w)
		return err
	})
	if err != nil {
		return nil, err
	}
	out.exact = st.layerSpec.Timestamp.time() == nil // writeTarLayer's CopyLayer
	diffID, err := out.layer.DiffID()
	if err != nil {
		return nil, err
	}
	diffIDs := make([]v1.Hash, 0, len(layers)+1)
	for _, l := range layers {
		diffIDs = append(diffIDs, l.DiffID)
	}
	chains := rootfs.ChainIDs(append(diffIDs, diffID))
	if err := r.store.Commit(ctx, r.sb, chains[len(chains)-1], upper); err != nil {
		return nil, err
	}
	return out, nil
}

// walkExclude is what a working-copy diff leaves out: the mount points the
// step made and the resolver files the sandbox swapped in.
func walkExclude(created []string) []string {
	return append([]string{"etc/hosts", "etc/resolv.conf"}, created...)
}

// rootfsLayers describes layers for the rootfs store.
func (s *stageState) rootfsLayers(layers []v1.Layer) ([]rootfs.Layer, error) {
	// Nothing runs on layers made from guesses about the base.
	if err := s.settleGuesses(s.b.ctx); err != nil {
		return nil, err
	}
	out := make([]rootfs.Layer, len(layers))
	for i, l := range layers {
		d, err := l.DiffID()
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		out[i] = rootfs.Layer{DiffID: d, Open: s.b.indexingOpener(s.b.ctx, l, d, s.stageTag()), Name: d.String()[:19], Verified: true}
	}
	return out, nil
}

// workCopy returns the stage's working copy, made and brought up to date
// with the stage's layers.
func (s *stageState) workCopy(ctx context.Context, r *runEnv, layers []rootfs.Layer, note func(string)) (*workCopy, error) {
	r.mu.Lock()
	if r.copies == nil {
		r.copies = map[*stageState]*workCopy{}
	}
	wc := r.copies[s]
	r.mu.Unlock()
	if wc == nil {
		base := filepath.Join(r.store.Root(), r.sb.Key())
		if err := os.MkdirAll(base, 0o700); err != nil {
			return nil, err
		}
		tmp, err := os.MkdirTemp(base, "copy-")
		if err != nil {
			return nil, err
		}
		wc = &workCopy{dir: filepath.Join(tmp, "rootfs"), snap: filepath.Join(tmp, "snapshot")}
		r.mu.Lock()
		r.copies[s] = wc
		r.mu.Unlock()
	}
	if wc.applied == len(layers) {
		return wc, nil
	}
	for i := wc.applied; i < len(layers); i++ {
		rc, err := layers[i].Open()
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", layers[i].Name, err)
		}
		notes, err := r.sb.Apply(ctx, wc.dir, rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("applying layer %s: %w", layers[i].Name, err)
		}
		for _, n := range notes {
			note(n)
		}
	}
	wc.applied = len(layers)
	if _, err := r.sb.WalkDiff(ctx, wc.dir, "", wc.snap, walkExclude(nil), nil, nil); err != nil {
		return nil, fmt.Errorf("snapshot of the working copy: %w", err)
	}
	return wc, nil
}

// writeTarLayer stores the tar that fill writes as a new layer: its
// entries are normalised by archive.TarWriter (spec's timestamp, when set,
// is every mtime), compressed and hashed in one pass; a stream already in
// normal form (normal) is taken as it is when no timestamp changes it.
// seen gets every header.
func (s *stageState) writeTarLayer(ctx context.Context, spec layerSpec, normal bool, fill func(w io.Writer) error, seen func(*tar.Header)) (v1.Layer, error) {
	st := s.b.opts.Store
	bw, err := st.NewBlobWriter(store.CallerHashes())
	if err != nil {
		return nil, err
	}
	defer bw.Abort()
	// An OS pipe: the helper writes straight into it (no copying
	// goroutine in between).
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	fillErr := make(chan error, 1)
	go func() {
		err := fill(pw)
		fillErr <- err // before the close: the reader's EOF comes after it
		pw.Close()
	}()
	var info archive.LayerInfo
	if ts := spec.Timestamp.time(); normal && ts == nil {
		info, err = archive.CopyLayer(bw, spec.Compression, ctxReader{ctx, pr}, seen)
	} else {
		info, err = rewriteLayer(ctx, bw, spec.Compression, ts, pr, seen)
	}
	var ferr error
	fillDone := false
	if err != nil {
		select {
		case ferr = <-fillErr:
			fillDone = true
		default:
		}
	}
	pr.Close() // a helper still writing gets EPIPE
	if !fillDone {
		ferr = <-fillErr
		if err != nil {
			// The layer's writer failed first (a full store: "no
			// space left on device"); the helper's failure (a broken
			// pipe) is its consequence.
			return nil, err
		}
	}
	if ferr != nil {
		return nil, ferr
	}
	if err != nil {
		return nil, err
	}
	if err := bw.Commit(info.Digest); err != nil {
		return nil, err
	}
	return st.Layer(v1.Descriptor{
		MediaType: spec.mediaType(),
		Size:      info.Size,
		Digest:    info.Digest,
	}, info.DiffID)
}

// rewriteLayer writes the tar stream r as a layer to bw, every entry
// normalised again (ts, when set, is every mtime). seen gets every header.
func rewriteLayer(ctx context.Context, bw io.Writer, c archive.Compression, ts *time.Time, r io.Reader, seen func(*tar.Header)) (archive.LayerInfo, error) {
	return archive.WriteLayer(bw, c, archive.TarOptions{Timestamp: ts}, func(tw *archive.TarWriter) error {
		tr := tar.NewReader(bufio.NewReaderSize(r, 256<<10))
		buf := make([]byte, 128<<10)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			seen(h)
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if h.Typeflag == tar.TypeReg && h.Size > 0 {
				if _, err := io.CopyBuffer(writerOnly{tw}, tr, buf); err != nil {
					return err
				}
			}
		}
	})
}

// ctxReader fails its reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// readByOthers reports whether another stage of the plan reads this
// one's files (built on it, COPY --from or RUN --mount from it).
func (s *stageState) readByOthers() bool {
	for _, o := range s.plan.Order {
		for _, d := range o.Deps {
			if d == s.run.stage {
				return true
			}
		}
	}
	return false
}

// headersIndex is the index of layer diffID from the headers its tar
// holds, in order.
func headersIndex(diffID v1.Hash, hdrs []*tar.Header) *archive.LayerIndex {
	x := &archive.LayerIndex{DiffID: diffID, Entries: make([]archive.IndexEntry, len(hdrs))}
	for i, h := range hdrs {
		x.Entries[i] = archive.EntryOf(h)
	}
	return x
}

// noteRunEntries records what a RUN layer holds in the known tree, so
// that later COPY steps see directories and symlinks RUN made (and what it
// removed). The tree takes the headers over.
func (s *stageState) noteRunEntries(hdrs []*tar.Header) {
	s.known.applyLayer(hdrs)
}

// fmtMS formats a duration in milliseconds with one decimal.
func fmtMS(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
}

// writerOnly hides everything but Write, so that io.CopyBuffer uses the
// buffer it is given.
type writerOnly struct{ io.Writer }

// scriptDir is where a RUN heredoc that starts with #! is put and run
// from, as BuildKit does; /dev is the sandbox's own, never in a layer.
const scriptDir = "/dev/pipes"

// scriptMount writes the #! heredoc script under dir (executable) and
// binds it read-only at /dev/pipes/NAME.
func scriptMount(script *heredoc, dir string) (sandbox.Mount, error) {
	f, err := os.CreateTemp(dir, "script-")
	if err != nil {
		return sandbox.Mount{}, err
	}
	_, werr := f.WriteString(script.text())
	cerr := f.Close()
	if werr != nil || cerr != nil {
		return sandbox.Mount{}, fmt.Errorf("writing the heredoc script failed")
	}
	if err := os.Chmod(f.Name(), 0o755); err != nil {
		return sandbox.Mount{}, err
	}
	return sandbox.Mount{Type: sandbox.MountBind, Target: path.Join(scriptDir, script.Name), Source: f.Name(), ReadOnly: true}, nil
}
