package dockerfile

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"

	"github.com/kiln-build/kiln/pkg/platform"
)

// PlanOptions are the inputs that decide which stages run and what their
// bases are.
type PlanOptions struct {
	// BuildArgs are --build-arg values (already resolved from the
	// environment for the `--build-arg NAME` form).
	BuildArgs map[string]string
	// Target names the stage to build; empty means the last one.
	Target string
	// TargetPlatform is the platform the image is built for; BuildPlatform
	// the one kiln runs on.
	TargetPlatform v1.Platform
	BuildPlatform  v1.Platform
	// Replaced are the (lower-case) names of stages that buildx's
	// --build-context NAME=… replaces, as BuildKit's frontend does: the
	// context wins over the stage, whose FROM and instructions are not
	// built. true: the context is an image, and the stage becomes FROM
	// NAME (resolved through the context) without instructions; false:
	// a directory, and the stage is dropped, so that COPY --from=NAME
	// reads the directory (FROM NAME and RUN --mount from=NAME then ask
	// the context for an image).
	Replaced map[string]bool
}

// Plan is what a build of one platform must do: the stages it needs, in an
// order where every stage comes after those it depends on.
type Plan struct {
	File   *File
	Stages []*Stage // every stage of the file, in source order
	Target *Stage
	Order  []*Stage // the stages the target needs, dependencies first
	// GlobalArgs are the values of the ARGs declared before the first FROM
	// (and of the predefined platform args) after applying build args.
	GlobalArgs map[string]string
	// GlobalUnset are the ARGs before the first FROM that have no value
	// (no default, no build arg): "" in FROM lines, but a stage's ARG of
	// the same name stays unset, as in BuildKit.
	GlobalUnset map[string]bool
	// UnusedBuildArgs are build args no ARG instruction consumed (docker
	// warns about these).
	UnusedBuildArgs []string
}

// Stage is one FROM block, with its base resolved as far as the Dockerfile
// alone allows.
type Stage struct {
	Index int
	Name  string // lower-case stage name, "" when unnamed
	// Base is the expanded image reference of FROM ("scratch" included), or
	// the name of an earlier stage when BaseStage is set.
	Base      string
	BaseStage *Stage
	// Platform is the expanded FROM --platform value, "" when unset.
	Platform string
	Commands []instructions.Command
	// Deps are the stages this one reads from (base stage, COPY --from,
	// RUN --mount from), without duplicates.
	Deps []*Stage
	// Source is the instruction block, for errors.
	Source *instructions.Stage
	// Replaced: a named context replaces the stage (PlanOptions.Replaced);
	// Base is then the stage's own name and Commands is empty. ByDir: the
	// context is a directory; the stage is never built (no stage depends
	// on it), and COPY --from it reads the directory.
	Replaced, ByDir bool
}

// PlatformArgs returns the predefined platform ARGs (TARGETPLATFORM,
// TARGETOS, … BUILDVARIANT) for a pair of platforms.
func PlatformArgs(target, build v1.Platform) map[string]string {
	m := map[string]string{}
	add := func(prefix string, p v1.Platform) {
		m[prefix+"PLATFORM"] = platform.Format(p)
		m[prefix+"OS"] = p.OS
		m[prefix+"ARCH"] = p.Architecture
		m[prefix+"VARIANT"] = p.Variant
	}
	add("TARGET", target)
	add("BUILD", build)
	return m
}

// ProxyArgs are predefined ARGs that RUN sees without a declaration and
// that never reach the image's history.
var ProxyArgs = []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
	"FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"}

// Plan resolves the stage graph: the global ARGs, every FROM's base, the
// target and the stages it needs.
func (f *File) Plan(opts PlanOptions) (*Plan, error) {
	pl := &planner{f: f, lex: f.Lexer(), opts: opts, used: map[string]bool{}, byName: map[string]*Stage{}}
	if err := pl.metaArgs(); err != nil {
		return nil, err
	}
	pl.p = &Plan{File: f, GlobalArgs: pl.global, GlobalUnset: pl.unset}
	for i := range f.Stages {
		st, err := pl.stage(i)
		if err != nil {
			return nil, err
		}
		pl.p.Stages = append(pl.p.Stages, st)
		if st.Name != "" {
			pl.byName[st.Name] = st
		}
	}
	if err := pl.target(); err != nil {
		return nil, err
	}
	pl.order()
	p := pl.p
	for k := range opts.BuildArgs {
		if !pl.used[k] && !isPredefined(k) {
			p.UnusedBuildArgs = append(p.UnusedBuildArgs, k)
		}
	}
	sort.Strings(p.UnusedBuildArgs)
	return p, nil
}

// planner is a Plan being made.
type planner struct {
	f      *File
	lex    *shell.Lex
	opts   PlanOptions
	p      *Plan
	global map[string]string // the meta ARGs' values
	unset  map[string]bool   // the meta ARGs without a value
	used   map[string]bool   // the build args an ARG consumed
	byName map[string]*Stage // the named stages so far
}

// metaArgs reads the ARGs before the first FROM.
func (pl *planner) metaArgs() error {
	pl.global = PlatformArgs(pl.opts.TargetPlatform, pl.opts.BuildPlatform)
	pl.unset = map[string]bool{}
	for _, a := range pl.f.MetaArgs {
		for _, kv := range a.Args {
			// A meta ARG's default may refer to earlier meta ARGs.
			v, declared, err := argValue(pl.lex, kv, pl.opts.BuildArgs, pl.global)
			if err != nil {
				return pl.f.Wrap(a.Location(), err)
			}
			if _, ok := pl.opts.BuildArgs[kv.Key]; ok {
				pl.used[kv.Key] = true
			}
			if declared {
				pl.global[kv.Key] = v
				delete(pl.unset, kv.Key)
			} else if _, predefined := pl.global[kv.Key]; !predefined {
				pl.global[kv.Key] = ""
				pl.unset[kv.Key] = true
			}
		}
	}
	return nil
}

// stage plans the i-th FROM block: its base, platform, name and the
// stages it depends on.
func (pl *planner) stage(i int) (*Stage, error) {
	f, lex := pl.f, pl.lex
	src := &f.Stages[i]
	st := &Stage{Index: i, Name: strings.ToLower(src.Name), Commands: src.Commands, Source: src}
	base, err := expandWord(lex, src.BaseName, pl.global)
	if err != nil {
		return nil, f.Errorf(src.Location, "FROM %s: %v", src.BaseName, err)
	}
	if base == "" {
		return nil, f.Errorf(src.Location, "FROM %q: the base name expands to an empty string", src.BaseName)
	}
	st.Base = base
	if isImage, ok := pl.opts.Replaced[st.Name]; ok && st.Name != "" {
		st.Base, st.Commands, st.Replaced, st.ByDir = st.Name, nil, true, !isImage
	} else if prev, ok := pl.byName[strings.ToLower(base)]; ok && !prev.ByDir {
		st.BaseStage = prev
		st.Deps = append(st.Deps, prev)
	}
	if src.Platform != "" {
		if st.Platform, err = expandWord(lex, src.Platform, pl.global); err != nil {
			return nil, f.Errorf(src.Location, "FROM --platform=%s: %v", src.Platform, err)
		}
	}
	if st.Name != "" {
		if _, dup := pl.byName[st.Name]; dup {
			return nil, f.Errorf(src.Location, "duplicate stage name %q", src.Name)
		}
		if _, err := strconv.Atoi(st.Name); err == nil {
			return nil, f.Errorf(src.Location, "stage name %q cannot be a number", src.Name)
		}
	}
	if st.Replaced {
		return st, nil
	}
	if err := pl.deps(st); err != nil {
		return nil, err
	}
	return st, nil
}

// deps adds the stages st's commands name by COPY --from and RUN
// --mount from=. Their values may use ARGs declared in the stage: they
// are expanded with what is known from the Dockerfile alone.
func (pl *planner) deps(st *Stage) error {
	env := map[string]string{}
	for _, c := range st.Commands {
		var err error
		switch c := c.(type) {
		case *instructions.ArgCommand:
			err = pl.stageArg(c, env)
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				if v, err := expandWord(pl.lex, kv.Value, env); err == nil {
					env[kv.Key] = v
				}
			}
		case *instructions.CopyCommand:
			err = pl.copyDep(st, c, env)
		case *instructions.RunCommand:
			err = pl.mountDeps(st, c, env)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// stageArg sets in env the values of a stage's ARG.
func (pl *planner) stageArg(c *instructions.ArgCommand, env map[string]string) error {
	for _, kv := range c.Args {
		// The name may be a variable too (ARG ${name}=value).
		kv, err := pl.f.ExpandArgName(kv, env)
		if err != nil {
			return pl.f.Wrap(c.Location(), err)
		}
		v, declared, err := argValue(pl.lex, kv, pl.opts.BuildArgs, merge(pl.global, env))
		if err != nil {
			return pl.f.Wrap(c.Location(), err)
		}
		if _, ok := pl.opts.BuildArgs[kv.Key]; ok {
			pl.used[kv.Key] = true
		}
		if !declared {
			if gv, ok := pl.global[kv.Key]; ok && !pl.unset[kv.Key] {
				v, declared = gv, true
			}
		}
		if declared {
			env[kv.Key] = v
		}
	}
	return nil
}

// copyDep adds the stage COPY --from names.
func (pl *planner) copyDep(st *Stage, c *instructions.CopyCommand, env map[string]string) error {
	if c.From == "" {
		return nil
	}
	from, err := expandWord(pl.lex, c.From, env)
	if err != nil {
		return pl.f.Errorf(c.Location(), "COPY --from=%s: %v", c.From, err)
	}
	if dep := lookupStage(pl.byName, pl.p.Stages, from); dep != nil {
		if !dep.ByDir {
			st.Deps = appendStage(st.Deps, dep)
		}
	} else if n, err := strconv.Atoi(from); err == nil {
		return pl.f.Errorf(c.Location(), "COPY --from=%d: there is no earlier stage with index %d (stages are numbered from 0)", n, n)
	} else if from == st.Name && st.Name != "" {
		return pl.f.Errorf(c.Location(), "COPY --from=%s: a stage cannot copy from itself", from)
	}
	return nil
}

// mountDeps adds the stages RUN --mount from= names.
func (pl *planner) mountDeps(st *Stage, c *instructions.RunCommand, env map[string]string) error {
	for _, m := range instructions.GetMounts(c) {
		if m.From == "" {
			continue
		}
		from, err := expandWord(pl.lex, m.From, env)
		if err != nil {
			return pl.f.Errorf(c.Location(), "RUN --mount from=%s: %v", m.From, err)
		}
		if dep := lookupStage(pl.byName, pl.p.Stages, from); dep != nil && !dep.ByDir {
			st.Deps = appendStage(st.Deps, dep)
		}
	}
	return nil
}

// target picks the stage to build: --target, else the last.
func (pl *planner) target() error {
	p := pl.p
	p.Target = p.Stages[len(p.Stages)-1]
	if pl.opts.Target == "" {
		return nil
	}
	t, ok := pl.byName[strings.ToLower(pl.opts.Target)]
	if !ok {
		names := make([]string, 0, len(pl.byName))
		for n := range pl.byName {
			names = append(names, n)
		}
		sort.Strings(names)
		if len(names) == 0 {
			return &Error{File: pl.f.Name, Err: fmt.Errorf("target stage %q not found: no stage has a name (use FROM … AS name)", pl.opts.Target)}
		}
		return &Error{File: pl.f.Name, Err: fmt.Errorf("target stage %q not found (stages: %s)", pl.opts.Target, strings.Join(names, ", "))}
	}
	p.Target = t
	return nil
}

// order lists the stages the target needs, dependencies first.
func (pl *planner) order() {
	seen := map[*Stage]bool{}
	var visit func(s *Stage)
	visit = func(s *Stage) {
		if seen[s] {
			return
		}
		seen[s] = true
		for _, d := range s.Deps {
			visit(d)
		}
		pl.p.Order = append(pl.p.Order, s)
	}
	visit(pl.p.Target)
}

// StageByRef finds the stage a COPY --from value names: a stage name or an
// index of an earlier stage. It returns nil when the value is an image
// reference. A stage a directory context replaced (ByDir) is returned
// too: the caller reads the directory.
func (p *Plan) StageByRef(ref string, before *Stage) *Stage {
	byName := map[string]*Stage{}
	for _, s := range p.Stages {
		if s.Index >= before.Index {
			break
		}
		if s.Name != "" {
			byName[s.Name] = s
		}
	}
	return lookupStage(byName, p.Stages[:before.Index], ref)
}

func lookupStage(byName map[string]*Stage, earlier []*Stage, ref string) *Stage {
	if s, ok := byName[strings.ToLower(ref)]; ok {
		return s
	}
	if n, err := strconv.Atoi(ref); err == nil && n >= 0 && n < len(earlier) {
		return earlier[n]
	}
	return nil
}

func appendStage(list []*Stage, s *Stage) []*Stage {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func isPredefined(k string) bool {
	for _, p := range ProxyArgs {
		if p == k {
			return true
		}
	}
	return false
}

// argValue gives the value an ARG takes: the build arg if one is given,
// else its expanded default. declared reports whether it has a value at all.
func argValue(lex *shell.Lex, kv instructions.KeyValuePairOptional, buildArgs, env map[string]string) (string, bool, error) {
	if v, ok := buildArgs[kv.Key]; ok {
		return v, true, nil
	}
	if kv.Value == nil {
		return "", false, nil
	}
	v, err := expandWord(lex, *kv.Value, env)
	if err != nil {
		return "", false, fmt.Errorf("ARG %s: %w", kv.Key, err)
	}
	return v, true, nil
}

func expandWord(lex *shell.Lex, word string, env map[string]string) (string, error) {
	v, _, err := lex.ProcessWord(word, mapEnv(env))
	if err == nil && len(v) > maxExpandedWord {
		return "", fmt.Errorf("%.40q expands to %d bytes, more than the %d a word may have (is a variable doubling itself?)", word, len(v), maxExpandedWord)
	}
	return v, err
}

// maxExpandedWord bounds what one word expands to, so that ENV A=$A$A
// repeated stops at a few MiB instead of taking gigabytes.
const maxExpandedWord = 4 << 20

func merge(a, b map[string]string) map[string]string {
	m := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}

// mapEnv adapts a map to BuildKit's shell.EnvGetter.
type mapEnv map[string]string

func (m mapEnv) Get(k string) (string, bool) { v, ok := m[k]; return v, ok }
func (m mapEnv) Keys() []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
