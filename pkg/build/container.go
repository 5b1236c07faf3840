package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/rootfs"
	"github.com/kiln-build/kiln/pkg/sandbox"
	"github.com/kiln-build/kiln/pkg/store"
)

// Volume is one `kiln run -v HOST:CTR[:ro]`.
type Volume struct {
	Host, Target string
	ReadOnly     bool
}

// ContainerOptions is one command run in an image, as `docker run --rm`
// runs it, in the sandbox RUN steps use.
type ContainerOptions struct {
	// Store holds the image's layers (and the unpacked-layer store).
	Store *store.Store
	Image v1.Image
	// Isolation is how the container is isolated (Detect, Use).
	Isolation Isolation
	// Entrypoint, when not nil, replaces the image's (docker run
	// --entrypoint: the image's CMD is then dropped too); Cmd, when not
	// empty, replaces the image's CMD.
	Entrypoint *string
	Cmd        []string
	// Env is added to the image's (KEY=VALUE; a later one wins).
	Env []string
	// Workdir and User replace the image's when set.
	Workdir, User string
	// Network is sandbox.NetworkHost (the default, also for "" and
	// sandbox.NetworkDefault: kiln has no bridge) or sandbox.NetworkNone.
	Network sandbox.Network
	Volumes []Volume
	Extras  sandbox.Extras
	Stdout  io.Writer
	Stderr  io.Writer
	// Log receives notes (what the sandbox could not do); stderr is the
	// command's alone otherwise, as with docker run.
	Log io.Writer
}

// RunContainer runs the image's command (with the options' changes) in a
// sandbox on the image's layers and returns its exit code (128+N for a
// signal). The root filesystem's writes are discarded: the unpacked
// layers stay in the store's rootfs cache, nothing else remains.
func RunContainer(ctx context.Context, o ContainerOptions) (int, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	cfg, err := o.Image.ConfigFile()
	if err != nil {
		return 0, fmt.Errorf("reading the image's config: %w", err)
	}
	step, err := containerStep(cfg, o)
	if err != nil {
		return 0, err
	}
	sb, _, err := o.Isolation.sandbox(ctx, filepath.Join(o.Store.Root(), "rootfs"))
	if err != nil {
		return 0, err
	}
	if sb.Mode() == sandbox.ModeNone {
		return 0, fmt.Errorf("kiln run needs an isolation mode, and none works here: %s (run `kiln doctor`)", sb.Reason())
	}
	if w := sb.Warning(); w != "" {
		fmt.Fprintf(o.Log, "warning: %s\n", w)
	}
	for _, m := range step.Mounts {
		if m.Type == sandbox.MountCache && !sb.Features().Mounts {
			return 0, fmt.Errorf("-v %s:%s: a writable volume needs a mount namespace, which %s mode cannot make (use :ro, whose files are copied in)", m.Source, m.Target, sb.Mode())
		}
	}
	rs, err := rootfs.Open(filepath.Join(o.Store.Root(), "rootfs"))
	if err != nil {
		return 0, err
	}
	layers, err := containerLayers(o.Store, o.Image)
	if err != nil {
		return 0, err
	}
	note := func(n string) { fmt.Fprintf(o.Log, "note: %s\n", n) }
	cleanup := context.WithoutCancel(ctx)
	if sb.Overlay() {
		if step.Lowers, err = rs.Prepare(ctx, sb, layers, note); err != nil {
			return 0, err
		}
		if step.TempDir, err = rs.TempDir(sb.Key(), "run-"); err != nil {
			return 0, err
		}
		defer func() { _ = sb.Remove(cleanup, step.TempDir) }()
	} else {
		// A working copy of its own, removed after.
		tmp, err := rs.TempDir(sb.Key(), "container-")
		if err != nil {
			return 0, err
		}
		defer func() { _ = sb.Remove(cleanup, tmp) }()
		step.Dir = filepath.Join(tmp, "rootfs")
		for _, l := range layers {
			rc, err := l.Open()
			if err != nil {
				return 0, fmt.Errorf("layer %s: %w", l.Name, err)
			}
			notes, err := sb.Apply(ctx, step.Dir, rc)
			rc.Close()
			if err != nil {
				return 0, fmt.Errorf("applying layer %s: %w", l.Name, err)
			}
			for _, n := range notes {
				note(n)
			}
		}
		step.TempDir = filepath.Join(tmp, "run")
		if err := os.Mkdir(step.TempDir, 0o700); err != nil {
			return 0, err
		}
	}
	res, err := sb.Run(ctx, step)
	if err != nil {
		return 0, err
	}
	for _, n := range res.Notes {
		note(n)
	}
	return res.ExitCode, nil
}

// containerStep is the sandbox step for o: docker run's rules for the
// command, environment, working directory and user.
func containerStep(cfg *v1.ConfigFile, o ContainerOptions) (sandbox.Step, error) {
	entry, cmd := cfg.Config.Entrypoint, cfg.Config.Cmd
	if o.Entrypoint != nil {
		entry, cmd = nil, nil
		if *o.Entrypoint != "" {
			entry = []string{*o.Entrypoint}
		}
	}
	if len(o.Cmd) > 0 {
		cmd = o.Cmd
	}
	args := append(append([]string(nil), entry...), cmd...)
	if len(args) == 0 {
		return sandbox.Step{}, errors.New("no command: the image has no ENTRYPOINT or CMD, and none was given")
	}
	env := append([]string(nil), cfg.Config.Env...)
	for _, kv := range o.Env {
		env = withEnv(env, []string{kv})
	}
	network := o.Network
	switch network {
	case "", sandbox.NetworkDefault, sandbox.NetworkHost:
		network = sandbox.NetworkHost
	case sandbox.NetworkNone:
	default:
		return sandbox.Step{}, fmt.Errorf("--network %s: kiln run has host (the default) or none", network)
	}
	step := sandbox.Step{
		Args: args, Env: env, User: cfg.Config.User, Cwd: cfg.Config.WorkingDir, Network: network,
		Extras: o.Extras, Stdout: o.Stdout, Stderr: o.Stderr,
	}
	if o.User != "" {
		step.User = o.User
	}
	if o.Workdir != "" {
		if !strings.HasPrefix(o.Workdir, "/") {
			return sandbox.Step{}, fmt.Errorf("-w %s: the working directory must be an absolute path", o.Workdir)
		}
		step.Cwd = o.Workdir
	}
	for _, v := range o.Volumes {
		m, err := volumeMount(v)
		if err != nil {
			return sandbox.Step{}, err
		}
		step.Mounts = append(step.Mounts, m)
	}
	return step, nil
}

// volumeMount makes -v HOST:CTR a mount: read-only, a bind; writable, a
// direct bind (a cache mount's kind) whose writes reach the host.
func volumeMount(v Volume) (sandbox.Mount, error) {
	if !filepath.IsAbs(v.Target) {
		return sandbox.Mount{}, fmt.Errorf("-v %s:%s: the container path must be absolute", v.Host, v.Target)
	}
	src, err := filepath.Abs(v.Host)
	if err != nil {
		return sandbox.Mount{}, err
	}
	if _, err := os.Stat(src); err != nil {
		// docker makes a missing host directory; kiln says so instead of
		// leaving one behind.
		return sandbox.Mount{}, fmt.Errorf("-v %s:%s: %w", v.Host, v.Target, err)
	}
	m := sandbox.Mount{Type: sandbox.MountCache, Source: src, Target: filepath.Clean(v.Target)}
	if v.ReadOnly {
		m.Type, m.ReadOnly = sandbox.MountBind, true
	}
	return m, nil
}

// containerLayers are the image's layers for the rootfs store, read
// through the store (verified, and kept for the next run).
func containerLayers(st *store.Store, img v1.Image) ([]rootfs.Layer, error) {
	ls, err := img.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]rootfs.Layer, len(ls))
	for i, l := range ls {
		d, err := l.DiffID()
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		l := l
		out[i] = rootfs.Layer{DiffID: d, Name: d.String()[:19], Verified: true, Open: func() (io.ReadCloser, error) {
			return st.OpenVerifiedLayer(l, d)
		}}
	}
	return out, nil
}
