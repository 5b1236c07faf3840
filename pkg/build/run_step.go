package build

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/cache"
	"github.com/kiln-build/kiln/pkg/sandbox"
)

// runStep is a RUN instruction parsed once (parseRun), against the stage
// as it is when the step runs: everything its execution depends on is a
// field, and its cache key is the hash of the same fields (Key), as
// BuildKit's solver.Op has CacheMap and Exec over one op.
//
// The exported fields are the key: Key hashes their JSON, so a field added
// here is in the key unless it says otherwise. Their names and order are
// the key's format (the one of the runInputs they replaced, so that
// existing caches keep hitting): a new field goes last, with omitempty, so
// that the keys of steps that do not use it stay the same. The unexported
// fields are not keyed, each for the reason it gives; TestRunStepKey
// fails when a field can change without changing the key.
type runStep struct {
	// Platform is the step's programs' platform (the stage's config's),
	// not the target's.
	Platform stepPlatform `json:"platform"`
	// Chain names the layers below by how they were made (chain.go);
	// resolveKey fills it.
	Chain    string    `json:"chain"`
	Args     []string  `json:"args"`
	Heredocs []heredoc `json:"heredocs,omitempty"`
	// Env is the step's environment: the image's ENV and the ARGs.
	Env  []string `json:"env"`
	User string   `json:"user"`
	Cwd  string   `json:"cwd"`
	// Network is RUN --network over docker build --network (run_network.go).
	Network sandbox.Network `json:"network"`
	Mounts  []runMount      `json:"mounts,omitempty"`
	// How the layer is written (compression, format, timestamp).
	layerSpec
	// OneID: the sandbox maps only the caller, so every file the step
	// makes is owned by root; such a layer is not what a sandbox with
	// subordinate ids would make.
	OneID bool `json:"oneID,omitempty"`
	// Extras are docker build's --add-host, --ulimit and --shm-size,
	// given to every RUN step (nil when unset, so that keys without them
	// are what they were).
	Extras *sandbox.Extras `json:"extras,omitempty"`
	// Security is RUN --security ("" for the default, sandbox;
	// run_security.go).
	Security string `json:"security,omitempty"`

	// below are the stage's layers the step runs on: keyed by Chain.
	below []v1.Layer
	// script is the #! heredoc run from a file (its text and name are in
	// Heredocs and Args).
	script *heredoc
	// proxyEnv are the proxy --build-args: deliberately not keyed, as in
	// BuildKit (proxy.go), like the secrets' values, which the step's
	// mounts name by id and execution reads from the build's options.
	proxyEnv []string
	// createdBy is the history text, made of Args, Heredocs and the ARGs
	// in Env; label and loc say where the step is in logs and errors.
	createdBy string
	label     string
	loc       []parser.Range
}

// heredoc is a RUN heredoc as the key sees it (a #! script runs from a
// file, so its text is not in the arguments).
type heredoc struct {
	Name  string `json:"name"`
	Data  string `json:"data"`
	Chomp bool   `json:"chomp,omitempty"`
}

// text is the heredoc's content as the step sees it.
func (h heredoc) text() string {
	if h.Chomp {
		return parser.ChompHeredocContent(h.Data)
	}
	return h.Data
}

// stepPlatform is the platform a step's programs are for; the key writes
// it as "os/arch/variant".
type stepPlatform struct {
	OS, Architecture, Variant string
}

func (p stepPlatform) MarshalJSON() ([]byte, error) {
	return json.Marshal(p.OS + "/" + p.Architecture + "/" + p.Variant)
}

func (p stepPlatform) v1() v1.Platform {
	return v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
}

// layerSpec is how a step's layer is written, part of every step's key
// (RUN's and COPY's): its fields are the key's "compression", "format"
// and "timestamp".
type layerSpec struct {
	Compression archive.Compression `json:"compression"`
	Format      Format              `json:"format"`
	Timestamp   *unixTime           `json:"timestamp,omitempty"`
}

// layerSpec is the build's.
func (b *builder) layerSpec() layerSpec {
	return layerSpec{Compression: b.opts.Compression, Format: b.opts.Format, Timestamp: (*unixTime)(b.opts.Timestamp)}
}

// mediaType is the media type of the layers it writes.
func (l layerSpec) mediaType() types.MediaType {
	return l.Compression.MediaType(l.Format == FormatOCI)
}

// unixTime is --timestamp; the key has it in seconds (what --timestamp
// and SOURCE_DATE_EPOCH give).
type unixTime time.Time

func (t *unixTime) MarshalJSON() ([]byte, error) {
	return json.Marshal((*time.Time)(t).Unix())
}

func (t *unixTime) time() *time.Time { return (*time.Time)(t) }

// Key is the step's cache key (resolveKey first).
func (st *runStep) Key() (string, error) {
	return cache.Key(cache.KindRun, st)
}

// errf is an error of the step, located in the Dockerfile.
func (s *stageState) runErrf(st *runStep, format string, args ...any) error {
	return s.file.Errorf(st.loc, "RUN %s: "+format, append([]any{st.label}, args...)...)
}

// parseRun reads c and the stage's state into a step: every flag of the
// instruction is read here and nowhere else.
func (s *stageState) parseRun(c *instructions.RunCommand, loc []parser.Range) (*runStep, error) {
	st := &runStep{label: s.stepLabel(c), loc: loc}
	var err error
	if st.Security, err = runSecurity(instructions.GetSecurity(c)); err != nil {
		return nil, s.runErrf(st, "%v", err)
	}
	if st.Network, err = runNetwork(string(instructions.GetNetwork(c)), s.b.opts.Network); err != nil {
		return nil, s.runErrf(st, "%v", err)
	}
	if d := instructions.GetDevices(c); len(d) > 0 {
		return nil, s.runErrf(st, "--device=%s is not supported", d[0].Name)
	}
	if st.Args, st.script, err = s.runArgs(c); err != nil {
		return nil, s.runErrf(st, "%v", err)
	}
	for _, f := range c.Files {
		st.Heredocs = append(st.Heredocs, heredoc{Name: f.Name, Data: f.Data, Chomp: f.Chomp})
	}
	if st.Mounts, err = parseRunMounts(c); err != nil {
		return nil, s.runErrf(st, "%v", err)
	}
	p := s.runPlatform()
	st.Platform = stepPlatform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
	st.Env = s.stepEnv()
	st.User = s.cfg.Config.User
	st.Cwd = s.cfg.Config.WorkingDir
	st.layerSpec = s.b.layerSpec()
	if e := s.b.opts.RunExtras; !e.Zero() {
		st.Extras = &e
	}
	st.proxyEnv = s.b.proxyEnv()
	st.createdBy = runCreatedBy(c, st, s.argsCreatedBy())
	return st, nil
}

// resolveKey fills what the key names by content: the chain of the layers
// below and what bind mounts expose. The layers below must be complete.
func (s *stageState) resolveKey(ctx context.Context, st *runStep) error {
	var err error
	if st.Chain, err = s.chainKey(); err != nil {
		return err
	}
	for i := range st.Mounts {
		if err := s.resolveMountKey(ctx, &st.Mounts[i]); err != nil {
			return err
		}
	}
	return nil
}

func runCreatedBy(c *instructions.RunCommand, st *runStep, argsPrefix string) string {
	if st.script != nil {
		return "RUN " + c.CmdLine[0] + "\n" + st.script.text()
	}
	// BuildKit's form: the ARGs in scope, the whole command line.
	line := strings.Join(st.Args, " ")
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
// as docker runs them) through SHELL. A heredoc that starts with #! is a
// script, run by its #! line from /dev/pipes/NAME (as BuildKit does; see
// scriptMount): it is returned too.
func (s *stageState) runArgs(c *instructions.RunCommand) ([]string, *heredoc, error) {
	args := append([]string(nil), c.CmdLine...)
	if len(c.Files) > 0 {
		if len(args) != 1 || !c.PrependShell {
			return nil, nil, fmt.Errorf("invalid heredoc in RUN")
		}
		if hd := parser.MustParseHeredoc(args[0]); hd != nil {
			f := heredoc{Name: hd.Name, Data: c.Files[0].Data, Chomp: c.Files[0].Chomp}
			if strings.HasPrefix(f.text(), "#!") {
				return []string{path.Join(scriptDir, hd.Name)}, &f, nil
			}
			args = []string{f.text()}
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
			return nil, nil, fmt.Errorf("empty command")
		}
		return args, nil, nil
	}
	sh := s.cfg.Config.Shell
	if len(sh) == 0 {
		sh = []string{"/bin/sh", "-c"}
	}
	return append(append([]string{}, sh...), strings.Join(args, " ")), nil, nil
}
