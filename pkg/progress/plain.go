package progress

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"time"
)

// heartbeatInterval is how often plain mode says how far a long transfer
// has got, so a CI log never looks stuck during a big upload.
const heartbeatInterval = 10 * time.Second

// plainReporter writes one line per finished blob event and per build
// event (BuildLine), and a heartbeat line for each transfer still running
// every heartbeatInterval.
type plainReporter struct {
	mu       sync.Mutex
	w        io.Writer
	closed   bool
	running  map[string]*Event // transfers started and not finished
	interval time.Duration
	stop     chan struct{}
}

func newPlain(w io.Writer) *plainReporter {
	return &plainReporter{w: w, running: map[string]*Event{}, interval: heartbeatInterval}
}

func (p *plainReporter) Report(e Event) {
	var line string
	if IsBuild(e) {
		line = BuildLine(e)
	} else {
		line = Line(e)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if !IsBuild(e) {
		p.track(e)
	}
	if line != "" {
		fmt.Fprintln(p.w, line)
	}
}

// track keeps the running transfers for the heartbeat (p.mu held).
func (p *plainReporter) track(e Event) {
	key := e.Op + "\x00" + e.Ref + "\x00" + e.Digest
	switch e.Action {
	case Start, Retry:
		if e.Time.IsZero() {
			e.Time = time.Now()
		}
		p.running[key] = &e
		if p.stop == nil && p.interval > 0 {
			p.stop = make(chan struct{})
			go p.heartbeat(p.stop)
		}
	case Progress:
		if r := p.running[key]; r != nil {
			r.Current = e.Current
		}
	case Done, Failed, Exists, Mounted:
		delete(p.running, key)
	}
}

func (p *plainReporter) heartbeat(stop chan struct{}) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			p.beat(now)
		}
	}
}

// beat writes one line per running transfer.
func (p *plainReporter) beat(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	keys := make([]string, 0, len(p.running))
	for k := range p.running {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e := p.running[k]
		fmt.Fprintln(p.w, heartbeatLine(*e, now))
	}
}

// heartbeatLine is "0123456789ab: Pushing 12.3MB/45.6MB (20s)".
func heartbeatLine(e Event, now time.Time) string {
	s := ShortDigest(e.Digest) + ": " + verb(e.Op) + " " + FormatBytes(e.Current)
	if e.Size > 0 {
		s += "/" + FormatBytes(e.Size)
	}
	return fmt.Sprintf("%s (%s)", s, now.Sub(e.Time).Round(time.Second))
}

// verb is the running form of a transfer operation.
func verb(op string) string {
	switch op {
	case OpPull:
		return "Downloading"
	case OpCopy:
		return "Copying"
	}
	return "Pushing"
}

func (p *plainReporter) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed && p.stop != nil {
		close(p.stop)
	}
	p.closed = true
	return nil
}
