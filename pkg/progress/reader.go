package progress

import (
	"io"
	"sync/atomic"
	"time"
)

// readerInterval bounds how often a Reader sends Progress events.
const readerInterval = 100 * time.Millisecond

// Reader counts the bytes read through it and reports them as Progress
// events built from a template event (Op, Ref, Kind, Digest, Size), at most
// every 100ms.
type Reader struct {
	r    io.Reader
	rep  Reporter
	base Event
	n    atomic.Int64
	last time.Time
}

// NewReader wraps r. rep may be nil (then it only counts).
func NewReader(r io.Reader, rep Reporter, base Event) *Reader {
	return &Reader{r: r, rep: rep, base: base}
}

// Read implements io.Reader.
func (p *Reader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		total := p.n.Add(int64(n))
		if p.rep != nil {
			if now := time.Now(); now.Sub(p.last) >= readerInterval {
				p.last = now
				e := p.base
				e.Action, e.Current, e.Time = Progress, total, now
				p.rep.Report(e)
			}
		}
	}
	return n, err
}

// N is the number of bytes read so far.
func (p *Reader) N() int64 { return p.n.Load() }
