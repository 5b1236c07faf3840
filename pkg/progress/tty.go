package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// ttyInterval bounds how often the terminal is redrawn for byte progress.
const ttyInterval = 100 * time.Millisecond

// barWidth is the number of cells of a progress bar.
const barWidth = 30

// ttyReporter keeps one line per blob and per running build step at the
// bottom of the terminal and redraws them in place: a step shows its timer
// and the last lines of its output while it runs and collapses to one line
// when it is done. Lines that are finished and sit above every unfinished
// line are left behind (they scroll away as normal output), so the redrawn
// region stays about as tall as what runs at once. Notes, warnings and the
// result are written above the region.
type ttyReporter struct {
	mu       sync.Mutex
	w        io.Writer
	region   []*ttyLine // lines being redrawn, in order of first event
	byKey    map[string]*ttyLine
	drawn    int // physical lines of region on screen
	lastDraw time.Time
	closed   bool
	now      func() time.Time
	width    int           // the terminal's columns; lines are cut to fit
	tick     chan struct{} // closed to stop the timer redraws
}

// ttyTail is how many of a running step's last output lines are shown.
const ttyTail = 5

type ttyLine struct {
	key     string
	ev      Event // the last event
	start   time.Time
	current int64
	final   string // the plain line once finished

	step  bool
	title string   // a step's instruction
	tail  []string // a running step's last output lines
}

func newTTY(w io.Writer) *ttyReporter {
	return &ttyReporter{w: w, byKey: map[string]*ttyLine{}, now: time.Now, width: terminalWidth(w)}
}

func (t *ttyReporter) Report(e Event) {
	if e.Kind == KindConfig || e.Kind == KindManifest || e.Kind == KindIndex {
		if e.Action != Failed {
			return
		}
	}
	if e.Time.IsZero() {
		e.Time = t.now()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if IsBuild(e) {
		t.reportBuild(e)
		return
	}
	key := e.Ref + "\x00" + e.Digest
	l := t.line(key, e.Time)
	l.ev = e
	switch e.Action {
	case Start:
		l.start, l.current, l.final = e.Time, 0, ""
	case Progress:
		l.current = e.Current
	case Retry:
		l.start, l.current = e.Time, 0
	case Done, Exists, Mounted, Failed:
		if e.Current > 0 {
			l.current = e.Current
		}
		l.final = Line(e)
	}
	if e.Action == Progress && e.Time.Sub(t.lastDraw) < ttyInterval {
		return
	}
	t.draw(e.Time, nil)
}

// line returns the region's line for key, adding it (t.mu held).
func (t *ttyReporter) line(key string, now time.Time) *ttyLine {
	l := t.byKey[key]
	if l == nil {
		l = &ttyLine{key: key, start: now}
		t.byKey[key] = l
		t.region = append(t.region, l)
	}
	return l
}

// reportBuild handles a build event (t.mu held).
func (t *ttyReporter) reportBuild(e Event) {
	if e.Step == "" || e.Action == Note || e.Action == Warning {
		if line := BuildLine(e); line != "" {
			t.draw(e.Time, []string{line})
		}
		return
	}
	l := t.line("step\x00"+e.Step, e.Time)
	l.step, l.ev = true, e
	var above []string
	switch e.Action {
	case StepStart:
		l.start, l.title, l.final, l.tail = e.Time, e.Text, "", nil
		t.startTicker()
	case Log:
		l.tail = append(l.tail, e.Text)
		if len(l.tail) > ttyTail {
			l.tail = l.tail[len(l.tail)-ttyTail:]
		}
		if e.Time.Sub(t.lastDraw) < ttyInterval {
			return
		}
	case StepDone:
		l.final = fmt.Sprintf("=> [%s] %s  %s", e.Step, l.title, FormatSeconds(e.Duration))
	case StepCached:
		l.final = fmt.Sprintf("=> CACHED [%s] %s", e.Step, l.title)
	case StepError:
		// The output that explains the failure stays on the screen.
		l.final = fmt.Sprintf("=> ERROR [%s] %s  %s", e.Step, l.title, FormatSeconds(e.Duration))
		for _, s := range l.tail {
			above = append(above, "   "+s)
		}
		above = append(above, "   "+e.Error)
	}
	t.draw(e.Time, nil)
	if len(above) > 0 {
		t.draw(e.Time, above)
	}
}

// startTicker redraws the region every ttyInterval while a step runs, so
// its timer moves (t.mu held).
func (t *ttyReporter) startTicker() {
	if t.tick != nil {
		return
	}
	t.tick = make(chan struct{})
	go func(stop chan struct{}) {
		tk := time.NewTicker(ttyInterval)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				t.mu.Lock()
				if !t.closed && t.running() {
					t.draw(t.now(), nil)
				}
				t.mu.Unlock()
			}
		}
	}(t.tick)
}

// running reports whether a step is running (t.mu held).
func (t *ttyReporter) running() bool {
	for _, l := range t.region {
		if l.step && l.final == "" {
			return true
		}
	}
	return false
}

// draw repaints the region, first writing the permanent lines above (t.mu
// held).
func (t *ttyReporter) draw(now time.Time, above []string) {
	var b strings.Builder
	if t.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", t.drawn)
	}
	for _, s := range above {
		b.WriteString("\x1b[2K")
		b.WriteString(t.fit(s))
		b.WriteByte('\n')
	}
	t.drawn = 0
	// Finished lines at the top are written once more and left behind.
	i := 0
	for i < len(t.region) && t.region[i].final != "" {
		b.WriteString("\x1b[2K")
		b.WriteString(t.fit(t.region[i].final))
		b.WriteByte('\n')
		delete(t.byKey, t.region[i].key)
		i++
	}
	t.region = t.region[i:]
	for _, l := range t.region {
		for _, s := range l.render(now) {
			b.WriteString("\x1b[2K")
			b.WriteString(t.fit(s))
			b.WriteByte('\n')
			t.drawn++
		}
	}
	// Clear what a taller region left below.
	b.WriteString("\x1b[J")
	t.lastDraw = now
	_, _ = io.WriteString(t.w, b.String())
}

// fit cuts s to the terminal's width, so that no line wraps (a wrapped
// line would break the cursor arithmetic of the redraw).
func (t *ttyReporter) fit(s string) string {
	if t.width <= 0 {
		return s
	}
	r := []rune(s)
	if len(r) < t.width {
		return s
	}
	return string(r[:t.width-1])
}

// render is the line(s) a region entry shows now.
func (l *ttyLine) render(now time.Time) []string {
	if l.final != "" {
		return []string{l.final}
	}
	if l.step {
		out := []string{fmt.Sprintf("=> [%s] %s  %s", l.ev.Step, l.title, FormatSeconds(now.Sub(l.start)))}
		for _, s := range l.tail {
			out = append(out, "   "+s)
		}
		return out
	}
	return []string{l.renderBlob(now)}
}

func (l *ttyLine) renderBlob(now time.Time) string {
	e := l.ev
	short := ShortDigest(e.Digest)
	verb := verb(e.Op)
	if e.Action == Retry {
		return fmt.Sprintf("%s: %s (retrying: %s)", short, verb, e.Error)
	}
	s := short + ": " + verb
	if e.Action == Start && l.current == 0 {
		if e.Size > 0 {
			s += " " + FormatBytes(e.Size)
		}
		return s
	}
	if e.Size > 0 {
		filled := int(float64(barWidth) * float64(l.current) / float64(e.Size))
		filled = min(max(filled, 0), barWidth)
		bar := strings.Repeat("=", filled)
		if filled < barWidth {
			bar += ">" + strings.Repeat(" ", barWidth-filled-1)
		}
		s += fmt.Sprintf(" [%s] %s/%s", bar, FormatBytes(l.current), FormatBytes(e.Size))
	} else {
		s += " " + FormatBytes(l.current)
	}
	if el := now.Sub(l.start).Seconds(); el > 0.2 {
		s += fmt.Sprintf(" %s/s", FormatBytes(int64(float64(l.current)/el)))
	}
	return s
}

func (t *ttyReporter) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	if len(t.region) > 0 {
		t.draw(t.now(), nil)
	}
	if t.tick != nil {
		close(t.tick)
	}
	t.closed = true
	return nil
}
