package progress

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// OpBuild is the operation of build events: steps, their output, notes,
// warnings and the result.
const OpBuild = "build"

// KindStep is the kind of the events about one build step.
const KindStep = "step"

// The actions of build events. A step has one StepStart, any number of Log
// and Note events, and one of StepDone, StepCached or StepError.
const (
	// StepStart: the step Step (its label, "stage-0 2/5") began; Text is
	// its instruction.
	StepStart Action = "step-start"
	// StepDone: the step ran; Duration is how long it took.
	StepDone Action = "step-done"
	// StepCached: the step's result came from the step cache; Text says
	// which layer and from where.
	StepCached Action = "step-cached"
	// StepError: the step failed (Error).
	StepError Action = "step-error"
	// Log: one line (Text) of a running step's output, carriage-return
	// progress reduced to its last state; Offset is the time since the
	// step began.
	Log Action = "log"
	// Note: something the build reports about a step or itself (Text).
	Note Action = "note"
	// Warning: something the user should act on (Text).
	Warning Action = "warning"
	// Result: the build is done; ID is the image ID (or the index digest),
	// Digest the manifest digest, Duration the total time, Text the names.
	Result Action = "result"
)

// IsBuild reports whether e is a build event (rather than a transfer).
func IsBuild(e Event) bool { return e.Op == OpBuild }

// BuildLine is the plain-mode line for a build event, without the newline,
// or "" when plain mode shows nothing for it.
func BuildLine(e Event) string {
	prefix := ""
	if e.Step != "" {
		prefix = "[" + e.Step + "] "
	}
	switch e.Action {
	case StepStart:
		return prefix + e.Text
	case StepDone:
		return prefix + "DONE " + FormatSeconds(e.Duration)
	case StepCached:
		if e.Text == "" {
			return prefix + "CACHED"
		}
		return prefix + "CACHED " + e.Text
	case StepError:
		return prefix + "ERROR: " + e.Error
	case Log:
		return fmt.Sprintf("%s%.3f %s", prefix, e.Offset.Seconds(), e.Text)
	case Note:
		return prefix + e.Text
	case Warning:
		return prefix + "warning: " + e.Text
	case Result:
		s := "built " + e.ID
		if e.Text != "" {
			s += " (" + e.Text + ")"
		}
		return s + " in " + FormatSeconds(e.Duration)
	}
	return ""
}

// FormatSeconds formats d as BuildKit does in its plain output: 0.3s, 12.5s.
func FormatSeconds(d time.Duration) string {
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// Steps reports build events to a Reporter: the build package's view of
// progress. A nil *Steps reports nothing.
type Steps struct {
	rep   Reporter
	start time.Time

	mu      sync.Mutex
	started map[string]time.Time
	ran     int
	cached  int
}

// NewSteps reports to rep (nil: nowhere) and times the build from now.
func NewSteps(rep Reporter) *Steps {
	if rep == nil {
		rep = Discard
	}
	return &Steps{rep: rep, start: time.Now(), started: map[string]time.Time{}}
}

func (s *Steps) send(e Event) {
	if s == nil {
		return
	}
	e.Op = OpBuild
	if e.Step != "" {
		e.Kind = KindStep
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	s.rep.Report(e)
}

// Start reports that step began with the instruction text.
func (s *Steps) Start(step, text string) {
	if s == nil {
		return
	}
	now := time.Now()
	s.mu.Lock()
	s.started[step] = now
	s.mu.Unlock()
	s.send(Event{Time: now, Action: StepStart, Step: step, Text: text})
}

// elapsed is the time since step began (zero when it never did).
func (s *Steps) elapsed(step string, now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.started[step]; ok {
		return now.Sub(t)
	}
	return 0
}

// Done reports that step ran to completion.
func (s *Steps) Done(step string) {
	if s == nil {
		return
	}
	now := time.Now()
	d := s.elapsed(step, now)
	s.mu.Lock()
	s.ran++
	s.mu.Unlock()
	s.send(Event{Time: now, Action: StepDone, Step: step, Duration: d})
}

// Cached reports that step's result came from the cache (what: which
// layer, from where).
func (s *Steps) Cached(step, what string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.cached++
	s.mu.Unlock()
	s.send(Event{Action: StepCached, Step: step, Text: what})
}

// Error reports that step failed.
func (s *Steps) Error(step string, err error) {
	if s == nil || err == nil {
		return
	}
	now := time.Now()
	s.send(Event{Time: now, Action: StepError, Step: step, Error: err.Error(), Duration: s.elapsed(step, now)})
}

// Notef reports a note about step ("" for the build itself).
func (s *Steps) Notef(step, format string, args ...any) {
	s.send(Event{Action: Note, Step: step, Text: fmt.Sprintf(format, args...)})
}

// Warnf reports a warning about step ("" for the build itself).
func (s *Steps) Warnf(step, format string, args ...any) {
	s.send(Event{Action: Warning, Step: step, Text: fmt.Sprintf(format, args...)})
}

// Result reports the end of the build: the image ID, its manifest digest
// and the names it was given.
func (s *Steps) Result(id, digest string, names []string) {
	if s == nil {
		return
	}
	s.send(Event{Action: Result, ID: id, Digest: digest, Text: strings.Join(names, ", "), Duration: time.Since(s.start)})
}

// Counts is how many steps ran and how many came from the cache so far.
func (s *Steps) Counts() (ran, cached int) {
	if s == nil {
		return 0, 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ran, s.cached
}

// Output returns a writer for a step's output: it splits it into lines,
// reduces carriage-return progress ("10%\r20%\r30%") to its last state and
// reports each line as a Log event. Flush reports a last unterminated line.
func (s *Steps) Output(step string) *LogWriter {
	return &LogWriter{s: s, step: step}
}

// LogWriter is the io.Writer Output returns. It is safe for concurrent use
// (a step's stdout and stderr share one).
type LogWriter struct {
	s    *Steps
	step string
	mu   sync.Mutex
	buf  []byte
}

// maxLogLine bounds a line kept in memory: a longer one is reported in
// pieces, so a step printing megabytes without a newline costs no memory.
const maxLogLine = 64 << 10

// Write implements io.Writer.
func (w *LogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxLogLine {
		w.emit(w.buf)
		w.buf = w.buf[:0]
	}
	if len(w.buf) == 0 {
		w.buf = nil
	}
	return len(p), nil
}

// Flush reports what is left without a newline.
func (w *LogWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
	}
	w.buf = nil
}

func (w *LogWriter) emit(line []byte) {
	line = bytes.TrimRight(line, "\r")
	if i := bytes.LastIndexByte(line, '\r'); i >= 0 {
		line = line[i+1:]
	}
	if w.s == nil {
		return
	}
	now := time.Now()
	w.s.send(Event{Time: now, Action: Log, Step: w.step, Text: string(line), Offset: w.s.elapsed(w.step, now)})
}

// Notes returns a writer whose lines are reported as build notes: for
// the lines a command prints around a build ("Tagged …"), so that in JSON
// mode nothing but events reaches the output. A line is a note whatever
// its text; a warning is reported with Warnf.
func (s *Steps) Notes() io.Writer { return noteWriter{s} }

type noteWriter struct{ s *Steps }

func (w noteWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimSuffix(string(p), "\n"), "\n") {
		w.s.Notef("", "%s", line)
	}
	return len(p), nil
}
