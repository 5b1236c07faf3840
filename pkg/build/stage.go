package build

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/dockerfile"
)

// stageState is a stage being built.
type stageState struct {
	b        *builder
	plan     *dockerfile.Plan
	file     *dockerfile.File
	run      *stageRun
	states   map[*dockerfile.Stage]*stageRun
	platform v1.Platform
	target   bool

	cfg    *v1.ConfigFile
	layers []v1.Layer // all layers, bottom first
	nBase  int        // how many of layers came from the base image
	known  *knownTree // entries of the layers this build made
	args   map[string]string
	cmdSet bool
	users  *userDB // lazily read /etc/passwd and /etc/group
	// tempDirs release (remove) the spools of the step being built
	// (spoolDir).
	tempDirs []func()
	// pending are the layers being written in the background.
	pending []*futureLayer
	// links name how the stage's filesystem was made (chain.go).
	links []chainLink
}

// execute builds the stage.
func (s *stageState) execute(ctx context.Context) (_ *stageResult, err error) {
	defer func() {
		if err != nil {
			s.waitLayers() // never leave a writer running behind a failed stage
		}
	}()
	st := s.run.stage
	if err := s.initBase(ctx); err != nil {
		return nil, err
	}
	s.args = map[string]string{}
	total := len(st.Commands) + 1
	s.b.logf("[%s 1/%d] FROM %s", s.stageTag(), total, st.Base)

	// A base image's ONBUILD triggers run first, then are dropped.
	triggers := s.cfg.Config.OnBuild
	s.cfg.Config.OnBuild = nil
	if len(triggers) > 0 {
		cmds, err := dockerfile.ParseTriggers(s.file.Name, triggers)
		if err != nil {
			return nil, s.file.Errorf(st.Source.Location, "ONBUILD trigger of base %s: %v", st.Base, err)
		}
		for _, c := range cmds {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			s.b.logf("[%s ONBUILD] %s", s.stageTag(), instructionText(c))
			if err := s.dispatch(ctx, c, st.Source.Location); err != nil {
				return nil, err
			}
		}
	}
	for i, c := range st.Commands {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s.b.logf("[%s %d/%d] %s", s.stageTag(), i+2, total, instructionText(c))
		if err := s.dispatch(ctx, c, c.Location()); err != nil {
			return nil, err
		}
	}
	if s.target {
		for _, k := range sortedKeys(s.b.opts.Labels) {
			if s.cfg.Config.Labels == nil {
				s.cfg.Config.Labels = map[string]string{}
			}
			s.cfg.Config.Labels[k] = s.b.opts.Labels[k]
		}
	}
	return s.finish()
}

// instructionText is an instruction as written, on one line.
func instructionText(c instructions.Command) string {
	text := fmt.Sprint(c)
	if i := strings.IndexByte(text, '\n'); i >= 0 {
		text = text[:i] + " …"
	}
	return text
}

func (s *stageState) stageTag() string {
	st := s.run.stage
	name := st.Name
	if name == "" {
		name = fmt.Sprintf("stage-%d", st.Index)
	}
	if len(s.b.opts.Platforms) > 1 {
		name += " " + dockerfile.FormatPlatform(s.platform)
	}
	return name
}

// finish waits for the stage's layers and assembles its image.
func (s *stageState) finish() (*stageResult, error) {
	if err := s.waitLayers(); err != nil {
		return nil, err
	}
	cfg := s.cfg
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = cfg.RootFS.DiffIDs[:0:0]
	for i, l := range s.layers {
		d, err := l.DiffID()
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, d)
	}
	img, err := assemble(cfg, s.layers, s.b.opts.Format, nil)
	if err != nil {
		return nil, err
	}
	src := &imageSource{ref: "stage " + s.stageTag(), img: img, cfg: cfg, layers: s.layers, st: s.b.opts.Store}
	return &stageResult{image: img, layers: s.layers, cfg: cfg, known: s.known, links: s.links, source: src}, nil
}

// env is the environment instructions are expanded in: the stage's ARGs,
// overridden by the image's ENV.
func (s *stageState) env() map[string]string {
	m := make(map[string]string, len(s.args)+len(s.cfg.Config.Env))
	for k, v := range s.args {
		m[k] = v
	}
	for _, kv := range s.cfg.Config.Env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func (s *stageState) setEnv(k, v string) {
	for i, kv := range s.cfg.Config.Env {
		if ek, _, _ := strings.Cut(kv, "="); ek == k {
			s.cfg.Config.Env[i] = k + "=" + v
			return
		}
	}
	s.cfg.Config.Env = append(s.cfg.Config.Env, k+"="+v)
}

// history appends a history entry; emptyLayer marks metadata-only steps.
func (s *stageState) history(createdBy string, emptyLayer bool) {
	s.cfg.History = append(s.cfg.History, v1.History{
		Created:    v1.Time{Time: s.b.start},
		CreatedBy:  createdBy,
		Comment:    "kiln",
		EmptyLayer: emptyLayer,
	})
}

// dispatch runs one instruction. loc locates errors (the trigger's FROM for
// ONBUILD triggers).
func (s *stageState) dispatch(ctx context.Context, c instructions.Command, loc []parser.Range) error {
	if ex, ok := c.(instructions.SupportsSingleWordExpansion); ok {
		if _, isArg := c.(*instructions.ArgCommand); !isArg {
			if err := ex.Expand(s.file.Expander(s.env())); err != nil {
				return s.file.Errorf(loc, "%s: %v", strings.ToUpper(c.Name()), err)
			}
		}
	}
	if ex, ok := c.(instructions.SupportsSingleWordExpansionRaw); ok {
		if err := ex.ExpandRaw(s.file.Expander(s.env())); err != nil {
			return s.file.Errorf(loc, "%s: %v", strings.ToUpper(c.Name()), err)
		}
	}
	switch c := c.(type) {
	case *instructions.ArgCommand:
		return s.doArg(c, loc)
	case *instructions.EnvCommand:
		var parts []string
		for _, kv := range c.Env {
			s.setEnv(kv.Key, kv.Value)
			parts = append(parts, kv.Key+"="+kv.Value)
		}
		s.history("ENV "+strings.Join(parts, " "), true)
	case *instructions.LabelCommand:
		if s.cfg.Config.Labels == nil {
			s.cfg.Config.Labels = map[string]string{}
		}
		var parts []string
		for _, kv := range c.Labels {
			s.cfg.Config.Labels[kv.Key] = kv.Value
			parts = append(parts, kv.Key+"="+kv.Value)
		}
		s.history("LABEL "+strings.Join(parts, " "), true)
	case *instructions.MaintainerCommand:
		s.cfg.Author = c.Maintainer
		s.history("MAINTAINER "+c.Maintainer, true)
	case *instructions.ExposeCommand:
		ports, err := s.exposedPorts(c)
		if err != nil {
			return s.file.Errorf(loc, "EXPOSE: %v", err)
		}
		if s.cfg.Config.ExposedPorts == nil {
			s.cfg.Config.ExposedPorts = map[string]struct{}{}
		}
		for _, p := range ports {
			s.cfg.Config.ExposedPorts[p] = struct{}{}
		}
		s.history("EXPOSE "+strings.Join(ports, " "), true)
	case *instructions.UserCommand:
		s.cfg.Config.User = c.User
		s.users = nil
		s.history("USER "+c.User, true)
	case *instructions.WorkdirCommand:
		return s.doWorkdir(ctx, c, loc)
	case *instructions.CmdCommand:
		s.cfg.Config.Cmd = s.commandLine(c.ShellDependantCmdLine)
		s.cmdSet = true
		s.history("CMD "+jsonList(s.cfg.Config.Cmd), true)
	case *instructions.EntrypointCommand:
		s.cfg.Config.Entrypoint = s.commandLine(c.ShellDependantCmdLine)
		if !s.cmdSet {
			// An ENTRYPOINT resets a CMD inherited from the base image.
			s.cfg.Config.Cmd = nil
		}
		s.history("ENTRYPOINT "+jsonList(s.cfg.Config.Entrypoint), true)
	case *instructions.VolumeCommand:
		if s.cfg.Config.Volumes == nil {
			s.cfg.Config.Volumes = map[string]struct{}{}
		}
		for _, v := range c.Volumes {
			if strings.TrimSpace(v) == "" {
				return s.file.Errorf(loc, "VOLUME specified can not be an empty string")
			}
			s.cfg.Config.Volumes[v] = struct{}{}
		}
		s.history("VOLUME "+jsonList(c.Volumes), true)
	case *instructions.StopSignalCommand:
		if err := validSignal(c.Signal); err != nil {
			return s.file.Errorf(loc, "STOPSIGNAL: %v", err)
		}
		s.cfg.Config.StopSignal = c.Signal
		s.history("STOPSIGNAL "+c.Signal, true)
	case *instructions.HealthCheckCommand:
		h := c.Health
		s.cfg.Config.Healthcheck = &v1.HealthConfig{
			Test: h.Test, Interval: h.Interval, Timeout: h.Timeout,
			StartPeriod: h.StartPeriod, Retries: h.Retries,
		}
		s.history("HEALTHCHECK "+jsonList(h.Test), true)
	case *instructions.ShellCommand:
		s.cfg.Config.Shell = append([]string(nil), c.Shell...)
		s.history("SHELL "+jsonList(c.Shell), true)
	case *instructions.OnbuildCommand:
		s.cfg.Config.OnBuild = append(s.cfg.Config.OnBuild, c.Expression)
		s.history("ONBUILD "+c.Expression, true)
	case *instructions.CopyCommand:
		return s.doCopy(ctx, copyRequest{
			name: "COPY", sd: c.SourcesAndDest, from: c.From, chown: c.Chown, chmod: c.Chmod,
			link: c.Link, exclude: c.ExcludePatterns, parents: c.Parents, loc: loc,
		})
	case *instructions.AddCommand:
		unpack := true
		if c.Unpack != nil {
			unpack = *c.Unpack
		}
		return s.doCopy(ctx, copyRequest{
			name: "ADD", sd: c.SourcesAndDest, chown: c.Chown, chmod: c.Chmod, link: c.Link,
			exclude: c.ExcludePatterns, add: true, unpack: unpack, checksum: c.Checksum, loc: loc,
		})
	case *instructions.RunCommand:
		return s.doRun(ctx, c, loc)
	default:
		return s.file.Errorf(loc, "%s is not supported", strings.ToUpper(c.Name()))
	}
	return nil
}

// doArg declares ARGs: the build arg wins, else the default, else the
// global ARG of the same name.
func (s *stageState) doArg(c *instructions.ArgCommand, loc []parser.Range) error {
	for _, kv := range c.Args {
		env := s.env()
		v, ok, err := s.file.ArgValue(kv, s.b.opts.BuildArgs, env)
		if err != nil {
			return s.file.Wrap(loc, err)
		}
		if !ok {
			if gv, found := s.plan.GlobalArgs[kv.Key]; found {
				v, ok = gv, true
			}
		}
		if ok || s.args[kv.Key] == "" {
			s.args[kv.Key] = v
		}
	}
	return nil
}

// commandLine gives CMD/ENTRYPOINT's argv: exec form as is, shell form
// through SHELL.
func (s *stageState) commandLine(cl instructions.ShellDependantCmdLine) []string {
	if !cl.PrependShell {
		return append([]string{}, cl.CmdLine...)
	}
	sh := s.cfg.Config.Shell
	if len(sh) == 0 {
		sh = []string{"/bin/sh", "-c"}
	}
	return append(append([]string{}, sh...), strings.Join(cl.CmdLine, " "))
}

// exposedPorts normalises EXPOSE arguments: "80", "80/tcp", "53/udp",
// "8000-8002/tcp" (expanded).
func (s *stageState) exposedPorts(c *instructions.ExposeCommand) ([]string, error) {
	var out []string
	for _, p := range c.Ports {
		for _, f := range strings.Fields(p) {
			port, proto, _ := strings.Cut(f, "/")
			if proto == "" {
				proto = "tcp"
			}
			proto = strings.ToLower(proto)
			if proto != "tcp" && proto != "udp" && proto != "sctp" {
				return nil, fmt.Errorf("invalid protocol %q in %q", proto, f)
			}
			lo, hi, isRange := strings.Cut(port, "-")
			a, err := parsePort(lo)
			if err != nil {
				return nil, fmt.Errorf("invalid port %q: %v", f, err)
			}
			bnd := a
			if isRange {
				if bnd, err = parsePort(hi); err != nil || bnd < a {
					return nil, fmt.Errorf("invalid port range %q", f)
				}
			}
			for n := a; n <= bnd; n++ {
				out = append(out, fmt.Sprintf("%d/%s", n, proto))
			}
		}
	}
	return out, nil
}

func parsePort(s string) (int, error) {
	var n int
	if s == "" {
		return 0, fmt.Errorf("empty port")
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("not a number")
		}
		n = n*10 + int(r-'0')
		if n > 65535 {
			return 0, fmt.Errorf("out of range")
		}
	}
	return n, nil
}

func validSignal(sig string) error {
	if sig == "" {
		return fmt.Errorf("empty signal")
	}
	if n, err := parsePort(sig); err == nil {
		if n == 0 || n > 64 {
			return fmt.Errorf("invalid signal number %s", sig)
		}
		return nil
	}
	name := strings.TrimPrefix(strings.ToUpper(sig), "SIG")
	for _, r := range name {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '+' || r == '-') {
			return fmt.Errorf("invalid signal %q", sig)
		}
	}
	return nil
}

func jsonList(l []string) string {
	b, _ := json.Marshal(l)
	return string(b)
}

// doWorkdir sets the working directory and, as docker does, creates it in a
// layer (owned by the current USER) unless this build already made it.
func (s *stageState) doWorkdir(ctx context.Context, c *instructions.WorkdirCommand, loc []parser.Range) error {
	p := c.Path
	if !path.IsAbs(p) {
		p = path.Join("/", s.cfg.Config.WorkingDir, p)
	}
	p = path.Clean(p)
	s.cfg.Config.WorkingDir = p
	createdBy := "WORKDIR " + p
	if p == "/" {
		s.history(createdBy, true)
		return nil
	}
	resolved, n := s.known.resolve(p)
	if n != nil && n.isDir() {
		s.history(createdBy, true)
		return nil
	}
	uid, gid := 0, 0
	if s.cfg.Config.User != "" {
		var err error
		if uid, gid, err = s.resolveOwner(ctx, s.cfg.Config.User, true); err != nil {
			return s.file.Errorf(loc, "WORKDIR %s: %v", c.Path, err)
		}
	}
	entries := []*copyEntry{{dest: resolved, hdr: dirHeader(resolved, 0o755, uid, gid, s.b.entryTime())}}
	return s.addLayer(ctx, entries, createdBy, func(err error) error {
		return s.file.Errorf(loc, "WORKDIR %s: %v", c.Path, err)
	})
}

var _ = archive.Gzip
