package progress

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

const (
	d1 = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	d2 = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	d3 = "sha256:1111111111112222222222223333333333334444444444445555555555556666"
)

func pushEvents(ref string) []Event {
	return []Event{
		{Op: OpPush, Action: Start, Ref: ref, Kind: KindLayer, Digest: d1, Size: 100},
		{Op: OpPush, Action: Progress, Ref: ref, Kind: KindLayer, Digest: d1, Size: 100, Current: 50},
		{Op: OpPush, Action: Done, Ref: ref, Kind: KindLayer, Digest: d1, Size: 100, Current: 100},
		{Op: OpPush, Action: Exists, Ref: ref, Kind: KindLayer, Digest: d2, Size: 7},
		{Op: OpPush, Action: Mounted, Ref: ref, Kind: KindLayer, Digest: d3, Size: 9, From: "library/base"},
		{Op: OpPush, Action: Done, Ref: ref, Kind: KindConfig, Digest: d2, Size: 3},
		{Op: OpPush, Action: Manifest, Ref: ref, Kind: KindManifest, Digest: d3, Size: 300},
	}
}

func TestPlainLines(t *testing.T) {
	var b bytes.Buffer
	r, err := New(&b, "plain")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range pushEvents("reg/app:1") {
		r.Report(e)
	}
	r.Report(Event{Op: OpPush, Action: Retry, Digest: d1, Kind: KindLayer, Error: "connection reset"})
	r.Report(Event{Op: OpPull, Action: Exists, Digest: d1, Kind: KindLayer})
	r.Report(Event{Op: OpPull, Action: Done, Digest: d2, Kind: KindLayer})
	r.Report(Event{Op: OpCopy, Action: Done, Digest: d3, Kind: KindLayer})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r.Report(Event{Op: OpPush, Action: Done, Digest: d1}) // after Close: ignored
	want := "0123456789ab: Pushed\n" +
		"fedcba987654: Layer already exists\n" +
		"111111111111: Mounted from library/base\n" +
		"0123456789ab: Retrying: connection reset\n" +
		"0123456789ab: Already exists\n" +
		"fedcba987654: Pull complete\n" +
		"111111111111: Copied\n"
	if b.String() != want {
		t.Errorf("plain output:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestJSONEvents(t *testing.T) {
	var b bytes.Buffer
	r, err := New(&b, "json")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Unix(1700000000, 0)
	evs := pushEvents("reg/app:1")
	for i := range evs {
		evs[i].Time = base.Add(time.Duration(i) * time.Millisecond)
	}
	// A second progress event within a second of the first is dropped.
	extra := evs[1]
	extra.Current, extra.Time = 60, base.Add(500*time.Millisecond)
	evs = append(evs[:2], append([]Event{extra}, evs[2:]...)...)
	for _, e := range evs {
		r.Report(e)
	}
	r.Close()
	dec := json.NewDecoder(&b)
	var got []Event
	for {
		var e Event
		if err := dec.Decode(&e); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decoding %q: %v", b.String(), err)
		}
		got = append(got, e)
	}
	if len(got) != 7 {
		t.Fatalf("got %d events, want 7 (one progress event dropped): %+v", len(got), got)
	}
	if got[1].Action != Progress || got[1].Current != 50 {
		t.Errorf("progress event %+v", got[1])
	}
	if got[4].Action != Mounted || got[4].From != "library/base" || got[4].Digest != d3 {
		t.Errorf("mount event %+v", got[4])
	}
	if got[6].Action != Manifest || got[6].Size != 300 || !got[6].Time.Equal(evs[7].Time) {
		t.Errorf("manifest event %+v", got[6])
	}
}

func TestJSONOneObjectPerLine(t *testing.T) {
	var b bytes.Buffer
	r, _ := New(&b, "json")
	for _, e := range pushEvents("x") {
		r.Report(e)
	}
	for i, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("line %d %q: %v", i, l, err)
		}
		if m["action"] == "" || m["time"] == nil {
			t.Errorf("line %d lacks action or time: %q", i, l)
		}
	}
}

func TestTTY(t *testing.T) {
	var b bytes.Buffer
	r := newTTY(&b)
	clock := time.Unix(1700000000, 0)
	r.now = func() time.Time { return clock }
	r.Report(Event{Op: OpPush, Action: Start, Kind: KindLayer, Digest: d1, Size: 2_000_000, Time: clock})
	r.Report(Event{Op: OpPush, Action: Start, Kind: KindLayer, Digest: d2, Size: 10, Time: clock})
	clock = clock.Add(time.Second)
	r.Report(Event{Op: OpPush, Action: Progress, Kind: KindLayer, Digest: d1, Size: 2_000_000, Current: 1_000_000, Time: clock})
	out := b.String()
	if !strings.Contains(out, "0123456789ab: Pushing [===============>              ] 1MB/2MB 1MB/s") {
		t.Errorf("no progress bar with bytes and rate in %q", out)
	}
	if !strings.Contains(out, "\x1b[2A") {
		t.Errorf("the two lines are not redrawn in place: %q", out)
	}
	r.Report(Event{Op: OpPush, Action: Exists, Kind: KindLayer, Digest: d2, Time: clock})
	r.Report(Event{Op: OpPush, Action: Done, Kind: KindLayer, Digest: d1, Size: 2_000_000, Current: 2_000_000, Time: clock})
	r.Close()
	out = b.String()
	last := out[strings.LastIndex(out, "\x1b[2A"):]
	if !strings.Contains(last, "0123456789ab: Pushed\n") || !strings.Contains(last, "fedcba987654: Layer already exists\n") {
		t.Errorf("final redraw %q", last)
	}
	if len(r.region) != 0 {
		t.Errorf("%d lines still being redrawn after every blob finished", len(r.region))
	}
}

func TestAutoModeAndParse(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := New(f, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.(*plainReporter); !ok {
		t.Errorf("auto on a regular file gave %T, want plain", r)
	}
	if IsTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is not a terminal")
	}
	if _, err := New(io.Discard, "fancy"); err == nil || !strings.Contains(err.Error(), `invalid progress mode "fancy"`) {
		t.Errorf("bad mode: %v", err)
	}
	if r, _ := New(io.Discard, "none"); r != Discard {
		t.Errorf("none gave %T", r)
	}
	Send(nil, Event{}) // a nil reporter is fine
}

func TestReaderAndFormat(t *testing.T) {
	var b bytes.Buffer
	rep, _ := New(&b, "json")
	pr := NewReader(strings.NewReader(strings.Repeat("x", 1000)), rep, Event{Op: OpPull, Digest: d1, Size: 1000})
	n, err := io.Copy(io.Discard, pr)
	if err != nil || n != 1000 || pr.N() != 1000 {
		t.Fatalf("copied %d (%v), counted %d", n, err, pr.N())
	}
	if !strings.Contains(b.String(), `"action":"progress"`) {
		t.Errorf("no progress event: %q", b.String())
	}
	for n, want := range map[int64]string{0: "0B", 999: "999B", 1500: "1.5kB", 12_345_678: "12.3MB", 1_020_000_000: "1.02GB", 512_000_000: "512MB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
