package progress

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder keeps the events reported to it.
type recorder struct{ events []Event }

func (r *recorder) Report(e Event) { r.events = append(r.events, e) }
func (r *recorder) Close() error   { return nil }

func TestLogWriterLinesAndCarriageReturns(t *testing.T) {
	var r recorder
	s := NewSteps(&r)
	s.Start("s 2/3", "RUN x")
	w := s.Output("s 2/3")
	w.Write([]byte("one\ntw"))
	w.Write([]byte("o\n10%\r20%\r30%\r\n"))
	w.Write([]byte("crlf\r\nlast"))
	w.Write([]byte(strings.Repeat("x", maxLogLine+1)))
	w.Flush()
	var got []string
	for _, e := range r.events {
		if e.Action == Log {
			if e.Step != "s 2/3" || e.Op != OpBuild || e.Kind != KindStep || e.Offset < 0 {
				t.Errorf("log event %+v", e)
			}
			got = append(got, e.Text)
		}
	}
	want := []string{"one", "two", "30%", "crlf", "last" + strings.Repeat("x", maxLogLine+1)}
	if len(got) != len(want) {
		t.Fatalf("got %d lines %q, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d = %.40q, want %.40q", i, got[i], want[i])
		}
	}
}

func TestStepsEventsAndCounts(t *testing.T) {
	var r recorder
	s := NewSteps(&r)
	s.Start("a 1/2", "FROM x")
	s.Done("a 1/2")
	s.Start("a 2/2", "RUN y")
	s.Cached("a 2/2", "y (layer 0123)")
	s.Start("b 2/2", "RUN z")
	s.Error("b 2/2", errors.New("exit status 1"))
	s.Warnf("", "careful %d", 1)
	s.Result("sha256:id", "sha256:dg", []string{"t:1", "t:2"})
	if ran, cached := s.Counts(); ran != 1 || cached != 1 {
		t.Errorf("counts %d ran, %d cached", ran, cached)
	}
	var lines []string
	for _, e := range r.events {
		lines = append(lines, BuildLine(e))
	}
	got := strings.Join(lines, "\n")
	re := regexp.MustCompile(`^\[a 1/2\] FROM x
\[a 1/2\] DONE 0\.\ds
\[a 2/2\] RUN y
\[a 2/2\] CACHED y \(layer 0123\)
\[b 2/2\] RUN z
\[b 2/2\] ERROR: exit status 1
warning: careful 1
built sha256:id \(t:1, t:2\) in 0\.\ds$`)
	if !re.MatchString(got) {
		t.Errorf("plain lines:\n%s", got)
	}
	var nilSteps *Steps
	nilSteps.Start("x", "y") // a nil *Steps reports nothing and never panics
	nilSteps.Output("x").Write([]byte("a\n"))
}

func TestPlainHeartbeat(t *testing.T) {
	var b syncBuffer
	p := newPlain(&b)
	p.interval = 20 * time.Millisecond
	p.Report(Event{Op: OpPush, Action: Start, Kind: KindLayer, Digest: d1, Size: 2_000_000})
	p.Report(Event{Op: OpPush, Action: Progress, Kind: KindLayer, Digest: d1, Size: 2_000_000, Current: 1_000_000})
	want := "0123456789ab: Pushing " + FormatBytes(1_000_000) + "/" + FormatBytes(2_000_000) + " ("
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(b.String(), want) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(b.String(), want) {
		t.Fatalf("no heartbeat for a running upload: %q", b.String())
	}
	p.Report(Event{Op: OpPush, Action: Done, Kind: KindLayer, Digest: d1, Size: 2_000_000, Current: 2_000_000})
	time.Sleep(60 * time.Millisecond)
	after := b.String()
	if !strings.HasSuffix(after, "0123456789ab: Pushed\n") {
		t.Errorf("heartbeat after the upload finished: %q", after)
	}
	p.Close()
}

func TestTTYSteps(t *testing.T) {
	var b bytes.Buffer
	r := newTTY(&b)
	r.width = 40
	clock := time.Unix(1700000000, 0)
	r.now = func() time.Time { return clock }
	s := NewSteps(r)
	s.Start("s 2/3", "RUN "+strings.Repeat("long ", 20))
	w := s.Output("s 2/3")
	for i := 0; i < 8; i++ {
		clock = clock.Add(time.Second)
		w.Write([]byte("line" + string(rune('0'+i)) + "\n"))
	}
	// Log lines are drawn at most every ttyInterval: a timer tick.
	r.mu.Lock()
	r.draw(r.now(), nil)
	r.mu.Unlock()
	out := b.String()
	for _, l := range strings.Split(out, "\n") {
		if l = stripEscapes(l); len([]rune(l)) >= 40 {
			t.Errorf("line wider than the terminal: %q", l)
		}
	}
	if !strings.Contains(out, "   line7\n") || strings.Contains(lastDraw(out), "line2") {
		t.Errorf("the running step does not show its last %d lines: %q", ttyTail, lastDraw(out))
	}
	s.Done("s 2/3")
	r.Close()
	final := lastDraw(b.String())
	if !regexp.MustCompile(`=> \[s 2/3\] RUN long`).MatchString(final) || strings.Contains(final, "line7") {
		t.Errorf("a finished step does not collapse to one line: %q", final)
	}
	if len(r.region) != 0 || r.drawn != 0 {
		t.Errorf("region %d lines, %d drawn after the step finished", len(r.region), r.drawn)
	}

	// A failed step leaves its last output on the screen.
	b.Reset()
	r = newTTY(&b)
	s = NewSteps(r)
	s.Start("s 3/3", "RUN false")
	s.Output("s 3/3").Write([]byte("why it failed\n"))
	s.Error("s 3/3", errors.New("exit status 1"))
	r.Close()
	if out := b.String(); !strings.Contains(out, "=> ERROR [s 3/3] RUN false") || !strings.Contains(out, "   why it failed\n") || !strings.Contains(out, "   exit status 1\n") {
		t.Errorf("failed step: %q", out)
	}
}

func TestJSONBuildEvents(t *testing.T) {
	var b bytes.Buffer
	rep, _ := New(&b, ModeJSON)
	s := NewSteps(rep)
	s.Start("s 1/1", "RUN x")
	s.Output("s 1/1").Write([]byte("out\n"))
	s.Done("s 1/1")
	s.Result("sha256:id", "sha256:dg", nil)
	var actions []string
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var e Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("not one JSON object per line: %q", line)
		}
		if e.Op != OpBuild || e.Time.IsZero() {
			t.Errorf("event %+v", e)
		}
		actions = append(actions, string(e.Action))
	}
	if got := strings.Join(actions, " "); got != "step-start log step-done result" {
		t.Errorf("actions %q", got)
	}
}

// lastDraw is what the last redraw wrote.
func lastDraw(out string) string {
	if i := strings.LastIndex(out, "\x1b[J"); i >= 0 {
		if j := strings.LastIndex(out[:i], "\x1b[J"); j >= 0 {
			return out[j:]
		}
	}
	return out
}

var escape = regexp.MustCompile(`\x1b\[\d*[A-Z]`)

func stripEscapes(s string) string { return escape.ReplaceAllString(s, "") }

// syncBuffer is a bytes.Buffer safe for the heartbeat goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestNotesAreNotesWarningsAreTyped: what a command writes to Notes is a
// note whatever its text (no "warning: " prefix makes a warning); a
// warning is a Warning event only through Warnf, and its plain line
// carries the prefix.
func TestNotesAreNotesWarningsAreTyped(t *testing.T) {
	var r recorder
	s := NewSteps(&r)
	fmt.Fprintf(s.Notes(), "Tagged app:1\nwarning: in a tag's text\n")
	s.Warnf("", "the step cache was not exported in full: %s", "boom")
	var got []string
	for _, e := range r.events {
		got = append(got, string(e.Action)+" "+e.Text)
	}
	want := []string{"note Tagged app:1", "note warning: in a tag's text", "warning the step cache was not exported in full: boom"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("events %q, want %q", got, want)
	}
	if l := BuildLine(r.events[2]); l != "warning: the step cache was not exported in full: boom" {
		t.Fatalf("plain line %q", l)
	}
}
