package archive

import (
	"errors"
	"io"
	"sync"
)

// ReadAhead reads r on a goroutine of its own, up to chunks reads of at
// most chunkSize bytes ahead of its reader, so that what r costs (network
// and disk reads, hashing and writing a copy in a tee) runs beside what
// reads the result (a decompressor) instead of in turn with it. An error
// of r (io.EOF included) is returned after the bytes read before it.
//
// Stop ends the goroutine; a read of r that blocks must be made to return
// first (by closing what r reads). r is never read again once Stop
// returned, nor once it returned an error.
func ReadAhead(r io.Reader, chunkSize, chunks int) *AheadReader {
	a := &AheadReader{
		full: make(chan aheadChunk, chunks),
		free: make(chan []byte, chunks),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go a.fill(r, chunkSize, chunks)
	return a
}

// AheadReader is the reader ReadAhead returns. Read is not safe for
// concurrent use; Stop may be called from any goroutine, more than once.
type AheadReader struct {
	full     chan aheadChunk
	free     chan []byte
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}

	cur  []byte // the chunk being read out
	off  int
	held []byte // cur's buffer, back to free once read out
	err  error  // sticky
}

type aheadChunk struct {
	b   []byte
	n   int
	err error
}

// errAheadStopped is what Read returns after Stop.
var errAheadStopped = errors.New("read-ahead stopped")

func (a *AheadReader) fill(r io.Reader, chunkSize, chunks int) {
	defer close(a.done)
	for made := 0; ; {
		var b []byte
		select {
		case b = <-a.free:
		default:
			// Buffers are made as they are needed: a short stream
			// costs one.
			if made < chunks {
				b = make([]byte, chunkSize)
				made++
				break
			}
			select {
			case b = <-a.free:
			case <-a.stop:
				return
			}
		}
		n, err := fillChunk(r, b)
		select {
		case a.full <- aheadChunk{b: b, n: n, err: err}:
		case <-a.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// fillChunk reads r into b until b is full or r fails (io.EOF included):
// fewer, larger hand-overs.
func fillChunk(r io.Reader, b []byte) (n int, err error) {
	for empty := 0; n < len(b) && err == nil; {
		var m int
		m, err = r.Read(b[n:])
		n += m
		if m == 0 && err == nil {
			if empty++; empty >= 100 {
				err = io.ErrNoProgress
			}
		}
	}
	return n, err
}

// Read implements io.Reader.
func (a *AheadReader) Read(p []byte) (int, error) {
	for a.off == len(a.cur) {
		if a.held != nil {
			a.free <- a.held
			a.held, a.cur, a.off = nil, nil, 0
		}
		if a.err != nil {
			return 0, a.err
		}
		select {
		case c := <-a.full:
			a.held, a.cur, a.off, a.err = c.b, c.b[:c.n], 0, c.err
		case <-a.stop:
			a.err = errAheadStopped
		}
	}
	n := copy(p, a.cur[a.off:])
	a.off += n
	return n, nil
}

// Stop ends the reading goroutine and waits for it to end.
func (a *AheadReader) Stop() {
	a.stopOnce.Do(func() { close(a.stop) })
	<-a.done
}
