package archive

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"sync/atomic"
)

// Decompression limits. A small compressed stream can expand without
// bound (a 10 MB gzip of 10 GiB of zeros); every stream kiln decompresses
// from outside (layers from a registry or an archive, ADD archives, a
// `build -` context) stops with an error once it has produced more than
// ExpansionFloor (256 MiB) and more than the ratio times the compressed bytes
// read so far. Real layers and archives stay far below: source trees and
// package installs compress 2 to 10 times; 100 leaves room for sparse and
// zero-filled files. The ratio is --max-decompression-ratio (or
// $KILN_MAX_DECOMPRESSION_RATIO); 0 turns the check off.
const (
	// DefaultExpansionRatio is the default decompression ratio limit.
	DefaultExpansionRatio = 100
	// ExpansionFloor is how much any stream may produce whatever its ratio.
	ExpansionFloor = 256 << 20
	// ExpansionEnv names the environment variable that sets the ratio.
	ExpansionEnv = "KILN_MAX_DECOMPRESSION_RATIO"
)

var expansionRatio atomic.Int64

func init() {
	expansionRatio.Store(DefaultExpansionRatio)
	if v := os.Getenv(ExpansionEnv); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			expansionRatio.Store(n)
		}
	}
}

// SetExpansionRatio sets the decompression ratio limit (0: none).
func SetExpansionRatio(n int64) {
	if n < 0 {
		n = 0
	}
	expansionRatio.Store(n)
}

// ExpansionRatio returns the decompression ratio limit (0: none).
func ExpansionRatio() int64 { return expansionRatio.Load() }

// ErrExpansion is wrapped by the error of a stream that expands too much.
var ErrExpansion = fmt.Errorf("decompressed size limit exceeded")

// CheckExpansion returns a reader of r (a decompressed stream) that fails
// once the stream has produced more than ExpansionFloor bytes and more than
// the ratio limit times compressed() (the compressed bytes consumed so far).
// what names the stream in the error.
func CheckExpansion(r io.Reader, compressed func() int64, what string) io.Reader {
	return &expansionReader{r: r, compressed: compressed, what: what, ratio: ExpansionRatio()}
}

type expansionReader struct {
	r          io.Reader
	compressed func() int64
	what       string
	ratio      int64
	n          int64
}

func (e *expansionReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.n += int64(n)
	if e.ratio > 0 && e.n > ExpansionFloor {
		if c := e.compressed(); c <= 0 || e.n/e.ratio > c {
			return n, fmt.Errorf("%s: %w: %d compressed bytes decompressed to more than %d (more than %d times, beyond the first %d MiB); if it is trusted, raise the ratio with --max-decompression-ratio or %s (0 turns the limit off)",
				e.what, ErrExpansion, c, e.n, e.ratio, ExpansionFloor>>20, ExpansionEnv)
		}
	}
	return n, err
}

// CountingReader counts the bytes read through it, for CheckExpansion's
// compressed count (Count may be called from another goroutine than the
// reader's).
type CountingReader struct {
	r io.Reader
	n atomic.Int64
}

// NewCountingReader counts what is read from r.
func NewCountingReader(r io.Reader) *CountingReader { return &CountingReader{r: r} }

func (c *CountingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// Count is how many bytes were read so far.
func (c *CountingReader) Count() int64 { return c.n.Load() }
