package build

import (
	"archive/tar"
	"context"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/dockerfile"
	plat "github.com/kiln-build/kiln/pkg/platform"
	"github.com/kiln-build/kiln/pkg/registry"
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

	// step is the label of the step being built ("stage-0 3/5") and
	// cached whether its result came from the step cache (progress).
	step   string
	cached bool

	cfg    *v1.ConfigFile
	layers []v1.Layer // all layers, bottom first
	nBase  int        // how many of layers came from the base image
	// extLayers and extHistory: see stageResult.
	extLayers, extHistory int
	known                 *knownTree // entries of the layers this build made
	// args are the ARG values RUN and expansions see over the image's Env
	// (an ARG after an ENV of the same name wins until the next such ENV,
	// as in BuildKit); argNames are the declared ARGs in order, for RUN's
	// history.
	args     map[string]string
	argNames []string
	cmdSet   bool
	users    *userDB // lazily read /etc/passwd and /etc/group
	// tempDirs release (remove) the spools of the step being built
	// (spoolDir).
	tempDirs []func()
	// pending are the layers being written in the background.
	pending []*futureLayer
	// links name how the stage's filesystem was made (chain.go).
	links []chainLink
	// guesses about the base not checked yet, noGuess (guessing is over
	// or not allowed) and wrong (a guess the index contradicted): see
	// speculate.go.
	guesses map[string]*tar.Header
	noGuess bool
	wrong   *wrongGuess
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
	s.beginStep(fmt.Sprintf("1/%d", total), "FROM "+st.Base)
	s.endStep(nil)

	// A base image's ONBUILD triggers run first, then are dropped.
	// A stage a named context replaces is that image as it is.
	triggers := s.cfg.Config.OnBuild
	if st.Replaced {
		triggers = nil
	} else {
		s.cfg.Config.OnBuild = nil
	}
	if len(triggers) > 0 {
		cmds, err := dockerfile.ParseTriggers(s.file.Name, triggers)
		if err != nil {
			return nil, s.file.Errorf(st.Source.Location, "ONBUILD trigger of base %s: %v", st.Base, err)
		}
		for _, c := range cmds {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			s.beginStep("ONBUILD", instructionText(c))
			if err := s.endStep(s.dispatch(ctx, c, st.Source.Location)); err != nil {
				return nil, err
			}
		}
	}
	for i, c := range st.Commands {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s.beginStep(fmt.Sprintf("%d/%d", i+2, total), instructionText(c))
		if err := s.endStep(s.dispatch(ctx, c, c.Location())); err != nil {
			return nil, err
		}
	}
	if s.target && len(s.b.opts.Platforms) > 0 {
		s.labelPlatform()
	}
	if s.target {
		for _, k := range sortedKeys(s.b.opts.Labels) {
			if s.cfg.Config.Labels == nil {
				s.cfg.Config.Labels = map[string]string{}
			}
			s.cfg.Config.Labels[k] = s.b.opts.Labels[k]
		}
	}
	if err := s.settleGuesses(ctx); err != nil {
		return nil, err
	}
	return s.finish()
}

// labelPlatform gives the target stage's config the platform asked for,
// as BuildKit does. Bases are checked (checkPlatform), so only a final
// stage pinned to another platform (FROM --platform=$BUILDPLATFORM …) can
// differ: that is allowed, for files that suit every platform, and noted.
func (s *stageState) labelPlatform() {
	have, want := s.runPlatform(), s.platform
	if !plat.Matches(have, want) {
		s.b.opts.Progress.Warnf("", "the final stage %s is built on %s and labelled %s: its files must suit %s",
			s.stageTag(), plat.Format(have), plat.Format(want), plat.Format(want))
	}
	same := have.OS == want.OS && have.Architecture == want.Architecture
	s.cfg.OS, s.cfg.Architecture = want.OS, want.Architecture
	if want.Variant != "" || !same {
		s.cfg.Variant = want.Variant
	}
}

// runPlatform is the platform the stage's programs are for (RUN runs
// them): its config's, else the build's target.
func (s *stageState) runPlatform() v1.Platform {
	if p := imagePlatform(s.cfg); p.Architecture != "" {
		if p.OS == "" {
			p.OS = "linux"
		}
		return plat.Normalize(p)
	}
	return s.platform
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
		name += " " + plat.Format(s.platform)
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
	return &stageResult{image: img, layers: s.layers, cfg: cfg, known: s.known, links: s.links, source: src,
		extLayers: s.extLayers, extHistory: s.extHistory}, nil
}

// env is the environment instructions are expanded in: the image's ENV
// and the ARGs that have a value (see args).
func (s *stageState) env() map[string]string {
	m := make(map[string]string, len(s.args)+len(s.cfg.Config.Env))
	for _, kv := range s.cfg.Config.Env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	for k, v := range s.args {
		m[k] = v
	}
	return m
}

// stepEnv is the environment of a RUN step: the image's ENV (with ARGs
// declared after an ENV of the same name in its place), then the other
// ARGs with a value in declaration order.
func (s *stageState) stepEnv() []string {
	env := make([]string, 0, len(s.cfg.Config.Env)+len(s.args))
	set := map[string]bool{}
	for _, kv := range s.cfg.Config.Env {
		k, _, _ := strings.Cut(kv, "=")
		if v, ok := s.args[k]; ok {
			kv = k + "=" + v
		}
		set[k] = true
		env = append(env, kv)
	}
	for _, k := range s.argNames {
		if v, ok := s.args[k]; ok && !set[k] {
			set[k] = true
			env = append(env, k+"="+v)
		}
	}
	return env
}

// argsCreatedBy is what BuildKit writes before a RUN command in its
// history: "|N K=V …" for the N ARGs declared so far (their values as RUN
// sees them), or "" when there are none.
func (s *stageState) argsCreatedBy() string {
	if len(s.argNames) == 0 {
		return ""
	}
	env := s.env()
	parts := []string{fmt.Sprintf("|%d", len(s.argNames))}
	for _, k := range s.argNames {
		parts = append(parts, k+"="+env[k])
	}
	return strings.Join(parts, " ")
}

func (s *stageState) setEnv(k, v string) {
	delete(s.args, k)
	for i, kv := range s.cfg.Config.Env {
		if ek, _, _ := strings.Cut(kv, "="); ek == k {
			s.cfg.Config.Env[i] = k + "=" + v
			return
		}
	}
	s.cfg.Config.Env = append(s.cfg.Config.Env, k+"="+v)
}

// maxConfigSize bounds the config a stage builds, instruction by
// instruction, so that ENV A=$A$A repeated cannot take gigabytes: what a
// registry serves by default (registry.DefaultMaxConfigSize).
const maxConfigSize = registry.DefaultMaxConfigSize

// configSize is about how large the stage's config is in JSON: the sum of
// its strings that instructions make grow.
func (s *stageState) configSize() int {
	n := 0
	c := &s.cfg.Config
	for _, l := range [][]string{c.Env, c.Cmd, c.Entrypoint, c.Shell, c.OnBuild} {
		for _, v := range l {
			n += len(v) + 4
		}
	}
	for k, v := range c.Labels {
		n += len(k) + len(v) + 6
	}
	for _, h := range s.cfg.History {
		n += len(h.CreatedBy) + len(h.Comment) + 64
	}
	return n
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

// dispatch runs one instruction, by family: ARG, the filesystem steps
// (WORKDIR, COPY and ADD, RUN) and the config-only instructions
// (doConfig). loc locates errors (the trigger's FROM for ONBUILD
// triggers).
func (s *stageState) dispatch(ctx context.Context, c instructions.Command, loc []parser.Range) (err error) {
	defer func() {
		if n := s.configSize(); err == nil && n > maxConfigSize {
			err = s.file.Errorf(loc, "%s: the image config grows to more than %d bytes (%d), more than registries and kiln accept; is a variable doubling itself?", strings.ToUpper(c.Name()), maxConfigSize, n)
		}
	}()
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
	case *instructions.WorkdirCommand:
		return s.doWorkdir(ctx, c, loc)
	case *instructions.CopyCommand:
		return s.doCopy(ctx, copyRequestOf(c, loc))
	case *instructions.AddCommand:
		return s.doCopy(ctx, addRequestOf(c, loc))
	case *instructions.RunCommand:
		return s.doRun(ctx, c, loc)
	}
	if ok, err := s.doConfig(c, loc); ok || err != nil {
		return err
	}
	return s.file.Errorf(loc, "%s is not supported", strings.ToUpper(c.Name()))
}

// doArg declares ARGs: the build arg wins, else the default, else the
// global ARG of the same name. The name may be a variable (ARG ${n}=v).
// An ARG without any value stays out of RUN's environment. The history
// entry lists each name with its default, as docker 20.10's BuildKit
// writes it (never a --build-arg value).
func (s *stageState) doArg(c *instructions.ArgCommand, loc []parser.Range) error {
	var parts []string
	for _, kv := range c.Args {
		env := s.env()
		kv, err := s.file.ExpandArgName(kv, env)
		if err != nil {
			return s.file.Wrap(loc, err)
		}
		part := kv.Key
		if kv.Value != nil {
			def, err := s.file.ExpandWord(*kv.Value, env)
			if err != nil {
				return s.file.Errorf(loc, "ARG %s: %v", kv.Key, err)
			}
			part += "=" + def
		}
		parts = append(parts, part)
		v, ok, err := s.file.ArgValue(kv, s.b.opts.BuildArgs, env)
		if err != nil {
			return s.file.Wrap(loc, err)
		}
		if !ok {
			if gv, found := s.plan.GlobalArgs[kv.Key]; found && !s.plan.GlobalUnset[kv.Key] {
				v, ok = gv, true
			}
		}
		if ok {
			s.args[kv.Key] = v
		}
		if !slices.Contains(s.argNames, kv.Key) {
			s.argNames = append(s.argNames, kv.Key)
		}
	}
	s.history("ARG "+strings.Join(parts, " "), true)
	return nil
}

// healthcheckText is a HEALTHCHECK's history text as docker 20.10's
// BuildKit writes it (Go's %q of docker's HealthConfig).
func healthcheckText(h *v1.HealthConfig) string {
	return fmt.Sprintf("&{%q %q %q %q %q}", h.Test, h.Interval.String(), h.Timeout.String(),
		h.StartPeriod.String(), rune(h.Retries))
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

// exposedPorts expands and normalises EXPOSE arguments as BuildKit does:
// each argument is expanded (`EXPOSE 82/$proto`, `$PORTS` giving several
// words), "[ip:][hostport:]port[-end][/proto]" keeps the container port,
// the protocol (tcp by default; tcp, udp or sctp) is lower-cased and ranges
// are listed port by port.
func (s *stageState) exposedPorts(c *instructions.ExposeCommand) ([]string, error) {
	env := s.env()
	var out []string
	for _, arg := range c.Ports {
		words, err := s.file.ExpandWords(arg, env)
		if err != nil {
			return nil, err
		}
		for _, w := range words {
			ports, err := parseExposed(w)
			if err != nil {
				return nil, fmt.Errorf("invalid port %q: %v", w, err)
			}
			out = append(out, ports...)
		}
	}
	return out, nil
}

func parseExposed(raw string) ([]string, error) {
	parts := strings.Split(raw, ":")
	container, host := parts[len(parts)-1], ""
	if len(parts) > 1 {
		host = parts[len(parts)-2]
	}
	port, proto, _ := strings.Cut(container, "/")
	if port == "" {
		return nil, fmt.Errorf("no port specified")
	}
	switch strings.ToLower(proto) {
	case "":
		proto = "tcp"
	case "tcp", "udp", "sctp":
		proto = strings.ToLower(proto)
	default:
		return nil, fmt.Errorf("invalid proto: %s", proto)
	}
	lo, hi, err := portRange(port)
	if err != nil {
		return nil, err
	}
	if host != "" {
		hlo, hhi, err := portRange(host)
		if err != nil {
			return nil, fmt.Errorf("invalid hostPort: %s", host)
		}
		if hhi-hlo != hi-lo && hi != lo {
			return nil, fmt.Errorf("invalid ranges specified for container and host Ports: %s and %s", port, host)
		}
	}
	out := make([]string, 0, hi-lo+1)
	for n := lo; n <= hi; n++ {
		out = append(out, strconv.Itoa(n)+"/"+proto)
	}
	return out, nil
}

// portRange parses "N" or "N-M" (0-65535).
func portRange(s string) (int, int, error) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err := parsePort(a)
	if err != nil {
		return 0, 0, err
	}
	if !isRange || a == b {
		return lo, lo, nil
	}
	hi, err := parsePort(b)
	if err != nil {
		return 0, 0, err
	}
	if hi < lo {
		return 0, 0, fmt.Errorf("invalid port range: %s", s)
	}
	return lo, hi, nil
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || s[0] == '+' || s[0] == '-' {
		return 0, fmt.Errorf("invalid port number %q", s)
	}
	if n > 65535 {
		return 0, fmt.Errorf("port %s out of range (0-65535)", s)
	}
	return n, nil
}

// signalNames are the names docker's signal parser knows (Linux).
var signalNames = func() map[string]bool {
	m := map[string]bool{}
	for _, n := range strings.Fields(`ABRT ALRM BUS CHLD CLD CONT FPE HUP ILL INT IO IOT KILL PIPE POLL PROF PWR
		QUIT SEGV STKFLT STOP SYS TERM TRAP TSTP TTIN TTOU URG USR1 USR2 VTALRM WINCH XCPU XFSZ RTMIN RTMAX`) {
		m[n] = true
	}
	for i := 1; i <= 15; i++ {
		m["RTMIN+"+strconv.Itoa(i)] = true
	}
	for i := 1; i <= 14; i++ {
		m["RTMAX-"+strconv.Itoa(i)] = true
	}
	return m
}()

// validSignal accepts what docker's signal parser does: a non-zero number,
// or a signal name with or without SIG, in any case.
func validSignal(sig string) error {
	if n, err := strconv.Atoi(sig); err == nil {
		if n == 0 {
			return fmt.Errorf("invalid signal: %s", sig)
		}
		return nil
	}
	if !signalNames[strings.TrimPrefix(strings.ToUpper(sig), "SIG")] {
		return fmt.Errorf("invalid signal: %s", sig)
	}
	return nil
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
	return s.workdirLayer(ctx, p, createdBy, loc)
}

var _ = archive.Gzip

// beginStep reports the start of the stage's step label ("3/5",
// "ONBUILD") with its instruction text.
func (s *stageState) beginStep(label, text string) {
	s.step, s.cached = s.stageTag()+" "+label, false
	s.b.opts.Progress.Start(s.step, text)
}

// endStep reports the end of the current step: done, cached (lookupCache
// said so already) or failed with err, which it returns.
func (s *stageState) endStep(err error) error {
	switch {
	case err != nil:
		s.b.opts.Progress.Error(s.step, err)
	case !s.cached:
		s.b.opts.Progress.Done(s.step)
	}
	return err
}
