package build

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
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
		jobs := b.opts.Registry.Jobs
		if jobs < 1 {
			jobs = 4
		}
		r.slots = make(chan struct{}, jobs)
		r.sb = b.opts.Sandbox
		if r.sb == nil {
			// Overlay is probed where the layers will be unpacked.
			sb, _, err := sandbox.New(ctx, sandbox.Options{Mode: b.opts.Isolation, ScratchDir: filepath.Join(b.opts.Store.Root(), "rootfs")})
			if err != nil {
				r.err = err
				return
			}
			r.sb = sb
			b.logf("%s", sb.Summary())
		}
		if w := r.sb.Warning(); w != "" {
			b.logf("%s", w)
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

// doRun runs a RUN step and adds its changes as a layer.
func (s *stageState) doRun(ctx context.Context, c *instructions.RunCommand, loc []parser.Range) error {
	defer s.cleanTemp() // context views of bind mounts
	stepStart := time.Now()
	label := s.stepLabel(c)
	errf := func(format string, args ...any) error {
		return s.file.Errorf(loc, "RUN %s: "+format, append([]any{label}, args...)...)
	}
	if sec := instructions.GetSecurity(c); sec == "insecure" {
		return errf("--security=insecure is not supported")
	}
	network := string(instructions.GetNetwork(c))
	switch network {
	case "", "default":
		if n := s.b.opts.Network; n == "host" || n == "none" {
			network = n // docker build --network: the default of RUN steps
		}
	case "host", "none":
	default:
		return errf("--network=%s is not supported (none or host)", network)
	}
	args, err := s.runArgs(c)
	if err != nil {
		return errf("%v", err)
	}
	env, err := s.runEnvList()
	if err != nil {
		return errf("%v", err)
	}
	r, err := s.b.runEnv(ctx)
	if err != nil {
		return errf("%v", err)
	}
	// The layers below must be complete to be unpacked.
	if err := s.waitLayers(); err != nil {
		return err
	}
	createdBy := runCreatedBy(c, args, s.argsCreatedBy())
	var key string
	if s.b.keyed {
		if key, err = s.runKey(ctx, c, args, env, network, r.sb.SingleMapping()); err != nil {
			// The cache is an optimisation: run the step without it.
			s.b.logf("[%s %s] warning: step cache: no key (%v); running the step", s.stageTag(), label, err)
			key = ""
		}
		if hit, err := s.cachedRun(ctx, key, label, createdBy); err != nil || hit {
			return err
		}
	}
	// A step for another platform runs through a binfmt_misc emulator.
	if err := s.b.canRun(s.runPlatform()); err != nil {
		return errf("%v", err)
	}
	layers, err := s.rootfsLayers(s.layers)
	if err != nil {
		return errf("%v", err)
	}
	note := func(n string) { s.b.logf("[%s] note: %s", s.stageTag(), n) }

	step := sandbox.Step{
		Args: args, Env: env, User: runUser(s.cfg.Config.User), Cwd: s.cfg.Config.WorkingDir, Network: network,
		Extras: s.b.opts.RunExtras,
	}
	var secrets string
	if hasSecretMount(c) || isScript(c) {
		var release func()
		if secrets, release, err = s.b.opts.Store.ShortLivedDir(); err != nil {
			return errf("%v", err)
		}
		defer release()
	}
	mounts, secretEnv, err := s.runMounts(ctx, r, c, note, secrets)
	if err != nil {
		return errf("%v", err)
	}
	if isScript(c) {
		m, err := scriptMount(c, secrets)
		if err != nil {
			return errf("%v", err)
		}
		mounts = append(mounts, m)
	}
	step.Mounts = mounts
	// At most --jobs steps run (and unpack and diff) at once; taken only
	// now, once every stage this step mounts is done, so it never waits
	// for a stage while holding a slot.
	select {
	case r.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-r.slots }()
	// Secret variables go to the step only: not in the cache key (made
	// above), the history or the image.
	step.Env = append(step.Env, secretEnv...)
	// So do proxy --build-args (proxy.go).
	step.Env = withEnv(step.Env, s.b.proxyEnv())
	out := &prefixWriter{s: s, prefix: "[" + s.stageTag() + " " + label + "] "}
	step.Stdout, step.Stderr = out, out

	var wc *workCopy
	var tmp string
	if r.sb.Overlay() {
		before := r.store.Unpacked()
		started := time.Now()
		lowers, err := r.store.Prepare(ctx, r.sb, layers, note)
		if err != nil {
			return errf("%v", err)
		}
		if n := r.store.Unpacked() - before; n > 0 {
			s.b.logf("[%s %s] unpacked %d layer(s) in %s", s.stageTag(), label, n, time.Since(started).Round(time.Millisecond))
		}
		step.Lowers = lowers
		if tmp, err = r.store.TempDir(r.sb.Key(), "run-"); err != nil {
			return errf("%v", err)
		}
		defer func() { _ = r.sb.Remove(context.WithoutCancel(ctx), tmp) }()
	} else {
		if wc, err = s.workCopy(ctx, r, layers, note); err != nil {
			return errf("%v", err)
		}
		step.Dir = wc.dir
		if tmp, err = os.MkdirTemp(filepath.Dir(wc.dir), "run-"); err != nil {
			return errf("%v", err)
		}
		defer os.RemoveAll(tmp)
	}
	step.TempDir = tmp
	res, err := r.sb.Run(ctx, step)
	out.flush()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errf("%v", err)
	}
	for _, n := range res.Notes {
		note(n)
	}
	if res.ExitCode != 0 {
		how := fmt.Sprintf("exit code %d", res.ExitCode)
		if res.Signal != "" {
			how = "killed by " + res.Signal
		}
		return errf("process %q did not complete successfully: %s", sandbox.CommandString(args), how)
	}

	// The diff becomes the layer.
	diffStart := time.Now()
	var hdrs []*tar.Header
	write := func(fill func(w io.Writer) error) (v1.Layer, error) {
		return s.writeTarLayer(ctx, fill, func(h *tar.Header) { hdrs = append(hdrs, h) })
	}
	var layer v1.Layer
	if wc == nil {
		upper := sandbox.UpperDir(tmp)
		layer, err = write(func(w io.Writer) error {
			_, err := r.sb.UpperDiff(ctx, upper, nil, w)
			return err
		})
		if err != nil {
			return errf("writing the layer: %v", err)
		}
		diffID, err := layer.DiffID()
		if err != nil {
			return errf("%v", err)
		}
		diffIDs := make([]v1.Hash, 0, len(layers)+1)
		for _, l := range layers {
			diffIDs = append(diffIDs, l.DiffID)
		}
		chains := rootfs.ChainIDs(append(diffIDs, diffID))
		if err := r.store.Commit(ctx, r.sb, chains[len(chains)-1], upper); err != nil {
			return errf("%v", err)
		}
	} else {
		next := wc.snap + ".next"
		layer, err = write(func(w io.Writer) error {
			_, err := r.sb.WalkDiff(ctx, wc.dir, wc.snap, next, walkExclude(nil), res.Created, w)
			return err
		})
		if err != nil {
			return errf("writing the layer: %v", err)
		}
		if err := os.Rename(next, wc.snap); err != nil {
			return errf("%v", err)
		}
		wc.applied = len(s.layers) + 1
	}

	s.layers = append(s.layers, layer)
	s.b.logf("[%s %s] RUN done in %s (command %s, diff and layer %s, %d entries)", s.stageTag(), label, fmtMS(time.Since(stepStart)), fmtMS(res.Command), fmtMS(time.Since(diffStart)), len(hdrs))
	s.noteRunEntries(hdrs)
	s.users = nil
	s.history(createdBy, false)
	if key != "" {
		s.links = append(s.links, chainLink{key: "run " + key})
		if err := s.b.opts.Cache.Put(ctx, key, cache.Entry{Layer: layer, Headers: hdrs, CreatedBy: createdBy}); err != nil {
			s.b.logf("[%s %s] warning: step cache: %v", s.stageTag(), label, err)
		}
	}
	return nil
}

// walkExclude is what a working-copy diff leaves out: the mount points the
// step made and the resolver files the sandbox swapped in.
func walkExclude(created []string) []string {
	return append([]string{"etc/hosts", "etc/resolv.conf"}, created...)
}

func runCreatedBy(c *instructions.RunCommand, args []string, argsPrefix string) string {
	if isScript(c) {
		return "RUN " + c.CmdLine[0] + "\n" + heredocData(c)
	}
	// BuildKit's form: the ARGs in scope, the whole command line.
	line := strings.Join(args, " ")
	if argsPrefix != "" {
		line = argsPrefix + " " + line
	}
	return "RUN " + line + " # buildkit"
}

// stepLabel is "N/TOTAL" for a command of the stage, or "ONBUILD".
func (s *stageState) stepLabel(c instructions.Command) string {
	cmds := s.run.stage.Commands
	for i, sc := range cmds {
		if sc == c {
			return fmt.Sprintf("%d/%d", i+2, len(cmds)+1)
		}
	}
	return "ONBUILD"
}

// runArgs is the step's argv: exec form as is, shell form (with heredocs
// as docker runs them) through SHELL.
func (s *stageState) runArgs(c *instructions.RunCommand) ([]string, error) {
	args := append([]string(nil), c.CmdLine...)
	if len(c.Files) > 0 {
		if len(args) != 1 || !c.PrependShell {
			return nil, fmt.Errorf("invalid heredoc in RUN")
		}
		if hd := parser.MustParseHeredoc(args[0]); hd != nil {
			data := c.Files[0].Data
			if c.Files[0].Chomp {
				data = parser.ChompHeredocContent(data)
			}
			if strings.HasPrefix(data, "#!") {
				// As BuildKit: the heredoc is a script, run by its #! line
				// from /dev/pipes/NAME (see scriptMount).
				return []string{path.Join(scriptDir, hd.Name)}, nil
			}
			args = []string{data}
		} else {
			var b strings.Builder
			b.WriteString(args[0])
			for _, f := range c.Files {
				b.WriteByte('\n')
				b.WriteString(f.Data)
				b.WriteString(f.Name)
			}
			args = []string{b.String()}
		}
	}
	if !c.PrependShell {
		if len(args) == 0 {
			return nil, fmt.Errorf("empty command")
		}
		return args, nil
	}
	sh := s.cfg.Config.Shell
	if len(sh) == 0 {
		sh = []string{"/bin/sh", "-c"}
	}
	return append(append([]string{}, sh...), strings.Join(args, " ")), nil
}

// runEnvList is the step's environment (stepEnv in stage.go).
func (s *stageState) runEnvList() ([]string, error) {
	return s.stepEnv(), nil
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
		out[i] = rootfs.Layer{DiffID: d, Open: s.b.indexingOpener(s.b.ctx, l, d, s.stageTag()), Name: d.String()[:19]}
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

// runMounts turns RUN --mount flags into sandbox mounts.
func (s *stageState) runMounts(ctx context.Context, r *runEnv, c *instructions.RunCommand, note func(string), secretDir string) ([]sandbox.Mount, []string, error) {
	var out []sandbox.Mount
	var env []string
	nSSH := 0
	for _, m := range instructions.GetMounts(c) {
		if m.Type == instructions.MountTypeSSH || m.Type == instructions.MountTypeSecret {
			var sm *sandbox.Mount
			var senv []string
			var err error
			if m.Type == instructions.MountTypeSSH {
				sm, senv, err = s.sshMount(m, nSSH)
				nSSH++
			} else {
				sm, senv, err = s.secretMount(m, secretDir)
			}
			if err != nil {
				return nil, nil, err
			}
			if sm != nil {
				out = append(out, *sm)
			}
			env = append(env, senv...)
			continue
		}
		target := m.Target
		if target == "" {
			return nil, nil, fmt.Errorf("--mount: no target")
		}
		if !path.IsAbs(target) {
			target = path.Join("/", s.cfg.Config.WorkingDir, target)
		}
		target = path.Clean(target)
		switch m.Type {
		case instructions.MountTypeTmpfs:
			out = append(out, sandbox.Mount{Type: "tmpfs", Target: target})
		case instructions.MountTypeCache:
			id := m.CacheID
			if id == "" {
				id = target
			}
			dir := filepath.Join(r.store.Root(), r.sb.Key(), "cache", cacheDirName(id))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, nil, err
			}
			out = append(out, sandbox.Mount{Type: "cache", Target: target, Source: dir})
		case instructions.MountTypeBind:
			bm := sandbox.Mount{Type: "bind", Target: target, ReadOnly: m.ReadOnly}
			src := m.Source
			if m.From == "" {
				if s.b.ctxSrc == nil {
					return nil, nil, fmt.Errorf("--mount=type=bind: there is no build context")
				}
				clean, err := cleanSource(src)
				if err != nil {
					return nil, nil, fmt.Errorf("--mount source=%s: %v", src, err)
				}
				p, err := s.b.ctxSrc.resolve(clean, true)
				if err != nil {
					return nil, nil, fmt.Errorf("--mount source=%s: %v", src, err)
				}
				if bm.Source, err = s.b.ctxSrc.bindSource(p, s.spoolDir); err != nil {
					return nil, nil, fmt.Errorf("--mount source=%s: not found in the build context: %v", src, err)
				}
			} else {
				layers, err := s.mountLayers(ctx, m.From)
				if err != nil {
					return nil, nil, err
				}
				rl, err := s.rootfsLayers(layers)
				if err != nil {
					return nil, nil, err
				}
				if len(rl) == 0 {
					return nil, nil, fmt.Errorf("--mount from=%s: the image has no layers", m.From)
				}
				if !r.sb.Overlay() {
					return nil, nil, fmt.Errorf("--mount from=%s needs overlay mounts, which this environment lacks", m.From)
				}
				lowers, err := r.store.Prepare(ctx, r.sb, rl, note)
				if err != nil {
					return nil, nil, err
				}
				bm.Lowers, bm.Source = lowers, src
			}
			out = append(out, bm)
		default:
			return nil, nil, fmt.Errorf("--mount=type=%s is not supported (bind, cache, tmpfs, secret and ssh are)", m.Type)
		}
	}
	return out, env, nil
}

// mountLayers are the layers of a stage or image named by --mount from=.
func (s *stageState) mountLayers(ctx context.Context, from string) ([]v1.Layer, error) {
	if dep := s.plan.StageByRef(from, s.run.stage); dep != nil {
		run := s.states[dep]
		if run == nil {
			return nil, fmt.Errorf("--mount from=%s: stage not built", from)
		}
		<-run.done
		if run.result == nil {
			return nil, fmt.Errorf("--mount from=%s: stage failed", from)
		}
		for _, l := range run.result.layers {
			if fl, ok := l.(*futureLayer); ok {
				if _, err := fl.wait(); err != nil {
					return nil, err
				}
			}
		}
		return run.result.layers, nil
	}
	src, err := s.b.image(ctx, from, s.platform)
	if err != nil {
		return nil, fmt.Errorf("--mount from=%s: %w", from, err)
	}
	return src.layers, nil
}

// cacheDirName is the directory of a cache mount's id: any string is an
// id (as in BuildKit), and its directory can name nothing else (not "..",
// "/" or another id's): a readable prefix of the id's safe characters and
// a hash of the whole id.
func cacheDirName(id string) string {
	var b strings.Builder
	for _, r := range id {
		if b.Len() >= 32 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	sum := sha256.Sum256([]byte(id))
	return b.String() + "-" + hex.EncodeToString(sum[:12])
}

// writeTarLayer stores the tar that fill writes as a new layer: its
// entries are normalised by archive.TarWriter (the build's timestamp
// applies), compressed and hashed in one pass. seen gets every header.
func (s *stageState) writeTarLayer(ctx context.Context, fill func(w io.Writer) error, seen func(*tar.Header)) (v1.Layer, error) {
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
	info, err := archive.WriteLayer(bw, s.b.opts.Compression, archive.TarOptions{Timestamp: s.b.opts.Timestamp}, func(tw *archive.TarWriter) error {
		tr := tar.NewReader(bufio.NewReaderSize(pr, 256<<10))
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
		MediaType: s.b.opts.Compression.MediaType(s.b.opts.Format == FormatOCI),
		Size:      info.Size,
		Digest:    info.Digest,
	}, info.DiffID)
}

// noteRunEntries records what a RUN layer holds in the known tree, so
// that later COPY steps see directories and symlinks RUN made (and what it
// removed).
func (s *stageState) noteRunEntries(hdrs []*tar.Header) {
	s.known.applyLayer(hdrs)
}

// prefixWriter writes a step's output to the build log, a line at a time,
// each line with the step's prefix.
type prefixWriter struct {
	s      *stageState
	prefix string
	mu     sync.Mutex
	buf    bytes.Buffer
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.Reset()
			w.buf.WriteString(line)
			break
		}
		w.s.b.logf("%s%s", w.prefix, strings.TrimRight(line, "\r\n"))
	}
	return len(p), nil
}

func (w *prefixWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.Len() > 0 {
		w.s.b.logf("%s%s", w.prefix, w.buf.String())
		w.buf.Reset()
	}
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

// isScript reports whether c is a heredoc RUN whose text starts with #!.
func isScript(c *instructions.RunCommand) bool {
	if len(c.Files) == 0 || len(c.CmdLine) != 1 || !c.PrependShell {
		return false
	}
	hd := parser.MustParseHeredoc(c.CmdLine[0])
	return hd != nil && strings.HasPrefix(heredocData(c), "#!")
}

func heredocData(c *instructions.RunCommand) string {
	data := c.Files[0].Data
	if c.Files[0].Chomp {
		data = parser.ChompHeredocContent(data)
	}
	return data
}

// scriptMount writes the heredoc script of c under dir (executable) and
// binds it read-only at /dev/pipes/NAME.
func scriptMount(c *instructions.RunCommand, dir string) (sandbox.Mount, error) {
	hd := parser.MustParseHeredoc(c.CmdLine[0])
	f, err := os.CreateTemp(dir, "script-")
	if err != nil {
		return sandbox.Mount{}, err
	}
	_, werr := f.WriteString(heredocData(c))
	cerr := f.Close()
	if werr != nil || cerr != nil {
		return sandbox.Mount{}, fmt.Errorf("writing the heredoc script failed")
	}
	if err := os.Chmod(f.Name(), 0o755); err != nil {
		return sandbox.Mount{}, err
	}
	return sandbox.Mount{Type: "bind", Target: path.Join(scriptDir, hd.Name), Source: f.Name(), ReadOnly: true}, nil
}
