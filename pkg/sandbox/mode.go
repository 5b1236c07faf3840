package sandbox

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/kiln-build/kiln/pkg/rootfs"
)

// Features is what an isolation mode can do. The build asks these, never
// the mode's name.
type Features struct {
	// Overlay: steps run on an overlay of unpacked layer directories
	// (Step.Lowers) and the mode implements OverlayImpl; otherwise steps
	// run on a working copy (Step.Dir) diffed by WalkDiff.
	Overlay bool
	// Mounts: RUN --mount bind, cache, tmpfs and ssh are mounts the step
	// sees (a mode without them may still emulate some: see Run's error).
	Mounts bool
	// PIDNamespace: the step has a pid namespace of its own (it sees only
	// its own processes, and they all die with its init).
	PIDNamespace bool
	// NetworkNamespace: --network none gives the step a network namespace
	// of its own (only loopback).
	NetworkNamespace bool
	// Ownership says how file owners the step sets reach its layer.
	Ownership Ownership
}

// Ownership is how faithfully a mode keeps the owners of files.
type Ownership int

const (
	// OwnersKept: every uid and gid a step gives a file lands in the layer.
	OwnersKept Ownership = iota
	// OwnersCollapsed: only root exists (a single-id user namespace): files
	// of other owners become root's, USER runs as root.
	OwnersCollapsed
	// OwnersRecorded: ownership is emulated from a table the mode records
	// (a mode without real ids); the layer gets the recorded owners.
	OwnersRecorded
)

// Impl is one isolation mode. Package sandbox implements userns, root and
// chroot; another package adds a mode with Register. The Sandbox a build
// uses wraps one Impl. Implementations are safe for concurrent use.
type Impl interface {
	// Mode is the mode's name (as --isolation takes it).
	Mode() Mode
	// Features is what the mode can do.
	Features() Features
	// Key names the id mapping: layer directories and working copies
	// made under different keys hold different owners and are kept apart
	// (rootfs.Unpacker).
	Key() string
	// Run runs a step (already checked against Features: Dir set when the
	// mode has no overlay, no --network none without a network namespace).
	// A command that ran and failed is not an error (StepResult.ExitCode);
	// the command's whole process tree is gone when Run returns.
	Run(ctx context.Context, st Step) (*StepResult, error)
	// Apply extracts the layer tar r onto the working copy dir (made when
	// missing) and returns notes on what it could not apply.
	Apply(ctx context.Context, dir string, r io.Reader) ([]string, error)
	// WalkDiff compares the working copy dir with the snapshot in the file
	// snapIn and writes the changes as an uncompressed layer tar to w and
	// the new snapshot to snapOut; without snapIn (and w) it only takes
	// the snapshot. created are mount points a step made (removed first).
	WalkDiff(ctx context.Context, dir, snapIn, snapOut string, exclude, created []string, w io.Writer) (rootfs.DiffStats, error)
	// Remove deletes a tree this mode made (it may hold other owners'
	// files).
	Remove(ctx context.Context, dir string) error
}

// OverlayImpl is implemented by modes whose Features().Overlay is set.
type OverlayImpl interface {
	Impl
	// Unpack is rootfs.Unpacker's Unpack.
	Unpack(ctx context.Context, lowers []string, dest, work string, r io.Reader) ([]string, error)
	// UpperDiff writes the overlay upper directory upper as an
	// uncompressed layer tar to w, in archive.TarWriter's normal form
	// (no Timestamp).
	UpperDiff(ctx context.Context, upper string, exclude []string, w io.Writer) (rootfs.DiffStats, error)
}

// Env is what detection knows about the process, for Candidate.Try.
type Env struct {
	UID, GID int
	// Name is the user's name ("" when the uid has none).
	Name string
	// Exe is the binary to re-execute as a helper (/proc/self/exe).
	Exe string
	// CapEff is the effective capability set (bit n: capability n).
	CapEff uint64
	// Seccomp is set when a seccomp filter is active on kiln itself.
	Seccomp bool
	// NoOverlay asks for working copies even where overlay works.
	NoOverlay bool
	// ScratchDir is where probes try overlay ("" for TMPDIR): on the
	// filesystem the layers will be unpacked on.
	ScratchDir string
}

// HasCap reports whether capability c is effective.
func (e *Env) HasCap(c uint) bool { return e.CapEff&(1<<c) != 0 }

// Candidate is an isolation mode detection can try.
type Candidate struct {
	Mode Mode
	// Order places it in auto-detection, lowest first: the built-in modes
	// are root 100, userns 200, chroot 300. A last resort takes 900.
	Order int
	// Try returns the mode and why it was chosen (one line) when it works
	// here, else an error saying why not; it may add checks to rep.
	Try func(ctx context.Context, env *Env, rep *Report) (impl Impl, reason string, err error)
}

var (
	registryMu sync.Mutex
	registry   = map[Mode]Candidate{}
)

// Register adds an isolation mode (from its package's init function).
// A mode registered twice panics: that is a programming error.
func Register(c Candidate) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[c.Mode]; dup || c.Mode == "" || c.Try == nil {
		panic(fmt.Sprintf("sandbox: bad or duplicate registration of mode %q", c.Mode))
	}
	registry[c.Mode] = c
}

// candidates returns the registered modes, in detection order.
func candidates() []Candidate {
	registryMu.Lock()
	defer registryMu.Unlock()
	out := make([]Candidate, 0, len(registry))
	for _, c := range registry {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Order < out[j].Order })
	return out
}

// Modes lists every mode --isolation accepts here (best first), none last.
func Modes() []Mode {
	var out []Mode
	for _, c := range candidates() {
		out = append(out, c.Mode)
	}
	return append(out, ModeNone)
}

// ParseMode parses --isolation: a mode, or "auto" / "" for the best the
// environment allows.
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(s) {
	case "", "auto":
		return "", nil
	case "rootless":
		return ModeUserns, nil
	case string(ModeNone):
		return ModeNone, nil
	}
	m := Mode(strings.ToLower(s))
	registryMu.Lock()
	_, ok := registry[m]
	registryMu.Unlock()
	if ok {
		return m, nil
	}
	var names []string
	for _, m := range Modes() {
		names = append(names, string(m))
	}
	return "", fmt.Errorf("--isolation %q: want auto, %s", s, strings.Join(names, ", "))
}

// noneMode is ModeNone: nothing runs.
type noneMode struct{}

func (noneMode) Mode() Mode         { return ModeNone }
func (noneMode) Features() Features { return Features{} }
func (noneMode) Key() string        { return "none" }
func (noneMode) Run(context.Context, Step) (*StepResult, error) {
	return nil, ErrUnavailable
}
func (noneMode) Apply(context.Context, string, io.Reader) ([]string, error) {
	return nil, ErrUnavailable
}
func (noneMode) WalkDiff(context.Context, string, string, string, []string, []string, io.Writer) (rootfs.DiffStats, error) {
	return rootfs.DiffStats{}, ErrUnavailable
}
func (noneMode) Remove(_ context.Context, dir string) error { return removeAll(dir) }
