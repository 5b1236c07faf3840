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

// ttyReporter keeps one line per blob at the bottom of the terminal and
// redraws them in place. Lines whose blob is finished and that sit above
// every unfinished line are left behind (they scroll away as normal
// output), so the redrawn region stays about as tall as the number of
// concurrent transfers.
type ttyReporter struct {
	mu       sync.Mutex
	w        io.Writer
	region   []*ttyLine // lines being redrawn, in order of first event
	byKey    map[string]*ttyLine
	drawn    int // lines of region on screen
	lastDraw time.Time
	closed   bool
	now      func() time.Time
}

type ttyLine struct {
	key     string
	ev      Event // the last event
	start   time.Time
	current int64
	final   string // the plain line once finished
}

func newTTY(w io.Writer) *ttyReporter {
	return &ttyReporter{w: w, byKey: map[string]*ttyLine{}, now: time.Now}
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
	key := e.Ref + "\x00" + e.Digest
	l := t.byKey[key]
	if l == nil {
		l = &ttyLine{key: key, start: e.Time}
		t.byKey[key] = l
		t.region = append(t.region, l)
	}
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
	t.draw(e.Time)
}

// draw repaints the region (t.mu held).
func (t *ttyReporter) draw(now time.Time) {
	var b strings.Builder
	if t.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", t.drawn)
	}
	for _, l := range t.region {
		b.WriteString("\x1b[2K")
		b.WriteString(l.render(now))
		b.WriteByte('\n')
	}
	t.drawn = len(t.region)
	// Leave finished lines at the top behind.
	i := 0
	for i < len(t.region) && t.region[i].final != "" {
		delete(t.byKey, t.region[i].key)
		i++
	}
	t.region = t.region[i:]
	t.drawn -= i
	t.lastDraw = now
	_, _ = io.WriteString(t.w, b.String())
}

func (l *ttyLine) render(now time.Time) string {
	if l.final != "" {
		return l.final
	}
	e := l.ev
	short := ShortDigest(e.Digest)
	verb := "Pushing"
	switch e.Op {
	case OpPull:
		verb = "Downloading"
	case OpCopy:
		verb = "Copying"
	}
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
		t.draw(t.now())
	}
	t.closed = true
	return nil
}
