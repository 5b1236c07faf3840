package progress

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/docker/go-units"
)

// Action is what happened to a blob or manifest.
type Action string

// The actions of events.
const (
	// Exists: the destination already has the blob (push, copy) or the
	// local store does (pull); nothing was transferred.
	Exists Action = "exists"
	// Mounted: the registry mounted the blob from another repository (From).
	Mounted Action = "mounted"
	// Start: a transfer of Size bytes began.
	Start Action = "start"
	// Progress: Current of Size bytes have moved.
	Progress Action = "progress"
	// Done: the transfer completed and was verified.
	Done Action = "done"
	// Retry: the transfer failed (Error) and starts again.
	Retry Action = "retry"
	// Failed: the transfer failed for good (Error).
	Failed Action = "failed"
	// Manifest: a manifest (Kind "manifest" or "index") was written to Ref.
	Manifest Action = "manifest"
)

// Kinds of the object an event is about.
const (
	KindLayer    = "layer"
	KindConfig   = "config"
	KindBlob     = "blob"
	KindManifest = "manifest"
	KindIndex    = "index"
)

// Operations that produce events.
const (
	OpPush = "push"
	OpPull = "pull"
	OpCopy = "copy"
)

// Event is one thing that happened to one blob or manifest.
type Event struct {
	// Time is when it happened; Report fills it in when zero.
	Time time.Time `json:"time"`
	// Op is the operation: push, pull or copy.
	Op string `json:"op,omitempty"`
	// Action is what happened.
	Action Action `json:"action"`
	// Ref is the image reference the operation writes (push, copy) or reads
	// (pull).
	Ref string `json:"ref,omitempty"`
	// Kind is layer, config, blob, manifest or index.
	Kind string `json:"kind,omitempty"`
	// Digest is the blob's or manifest's digest, "sha256:...".
	Digest string `json:"digest,omitempty"`
	// Size is the blob's size in bytes, when known.
	Size int64 `json:"size,omitempty"`
	// Current is how many bytes have moved (Progress, Done).
	Current int64 `json:"current,omitempty"`
	// From is the repository a blob was mounted from.
	From string `json:"from,omitempty"`
	// Error describes a Retry or Failed event.
	Error string `json:"error,omitempty"`

	// Build events (Op "build", build.go).

	// Step is the label of the step a build event is about ("stage-0 2/5").
	Step string `json:"step,omitempty"`
	// Text is the instruction (StepStart), the output line (Log), the
	// note, warning or cache source, or the names of the Result.
	Text string `json:"text,omitempty"`
	// Duration is how long a step (StepDone, StepError) or the build
	// (Result) took.
	Duration time.Duration `json:"duration_ns,omitempty"`
	// Offset is the time since the step began, for a Log line.
	Offset time.Duration `json:"offset_ns,omitempty"`
	// ID is the image ID of a Result.
	ID string `json:"id,omitempty"`
}

// Reporter renders events. Its methods are safe for concurrent use.
type Reporter interface {
	// Report records an event.
	Report(Event)
	// Close finishes the output (the terminal's last redraw); events after
	// Close are ignored.
	Close() error
}

// Mode is how a Reporter renders: the --progress value, parsed once by
// ParseMode.
type Mode string

// The modes.
const (
	ModeAuto  Mode = "auto"
	ModeTTY   Mode = "tty"
	ModePlain Mode = "plain"
	ModeJSON  Mode = "json"
	ModeQuiet Mode = "quiet"
)

// ParseMode reads a --progress value: auto (or empty), tty, plain, json or
// quiet ("none" is quiet too).
func ParseMode(mode string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(mode))); m {
	case "", ModeAuto:
		return ModeAuto, nil
	case ModeTTY, ModePlain, ModeJSON, ModeQuiet:
		return m, nil
	case "none":
		return ModeQuiet, nil
	default:
		return "", fmt.Errorf("invalid progress mode %q: want auto, tty, plain, json or quiet", mode)
	}
}

// New returns a Reporter writing to w in mode (from ParseMode; "" is
// ModeAuto). In auto mode the terminal rendering is used when w is a
// terminal and TERM is not "dumb"; plain lines otherwise.
func New(w io.Writer, mode Mode) (Reporter, error) {
	m, err := ParseMode(string(mode))
	if err != nil {
		return nil, err
	}
	if m == ModeAuto {
		m = ModePlain
		if IsTerminal(w) && os.Getenv("TERM") != "dumb" {
			m = ModeTTY
		}
	}
	switch m {
	case ModeTTY:
		return newTTY(w), nil
	case ModeJSON:
		return &jsonReporter{enc: json.NewEncoder(w), last: map[string]time.Time{}}, nil
	case ModeQuiet:
		return Discard, nil
	default:
		return newPlain(w), nil
	}
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && f != nil && isTerminal(f)
}

// Discard is a Reporter that reports nothing.
var Discard Reporter = discard{}

type discard struct{}

func (discard) Report(Event) {}
func (discard) Close() error { return nil }

// Send reports e to r, which may be nil.
func Send(r Reporter, e Event) {
	if r != nil {
		r.Report(e)
	}
}

// ShortDigest is the 12 hex digits docker shows for a digest.
func ShortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 {
		d = d[i+1:]
	}
	if len(d) > 12 {
		d = d[:12]
	}
	return d
}

// Line is the plain-mode line for e, without the newline, or "" when plain
// mode shows nothing for it (starts, byte progress, configs and manifests,
// which the commands report themselves).
func Line(e Event) string {
	if e.Kind == KindConfig || e.Kind == KindManifest || e.Kind == KindIndex {
		if e.Action != Failed {
			return ""
		}
	}
	short := ShortDigest(e.Digest)
	switch e.Action {
	case Exists:
		if e.Op == OpPull {
			return short + ": Already exists"
		}
		return short + ": Layer already exists"
	case Mounted:
		return short + ": Mounted from " + e.From
	case Done:
		switch e.Op {
		case OpPull:
			return short + ": Pull complete"
		case OpCopy:
			return short + ": Copied"
		default:
			return short + ": Pushed"
		}
	case Retry:
		return short + ": Retrying: " + e.Error
	case Failed:
		return short + ": Failed: " + e.Error
	}
	return ""
}

// jsonInterval bounds how often a blob's Progress events are written.
const jsonInterval = time.Second

// jsonReporter writes every event as one JSON object per line, byte
// progress at most once per jsonInterval per blob.
type jsonReporter struct {
	mu     sync.Mutex
	enc    *json.Encoder
	last   map[string]time.Time
	closed bool
}

func (j *jsonReporter) Report(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return
	}
	key := e.Ref + "\x00" + e.Digest
	if e.Action == Progress {
		if t, ok := j.last[key]; ok && e.Time.Sub(t) < jsonInterval {
			return
		}
		j.last[key] = e.Time
	} else if e.Action == Done || e.Action == Failed {
		delete(j.last, key)
	}
	_ = j.enc.Encode(e)
}

func (j *jsonReporter) Close() error {
	j.mu.Lock()
	j.closed = true
	j.mu.Unlock()
	return nil
}

// FormatBytes formats n as docker does: 512B, 1.5kB, 12.3MB, 1.02GB.
func FormatBytes(n int64) string { return units.HumanSizeWithPrecision(float64(n), 3) }
