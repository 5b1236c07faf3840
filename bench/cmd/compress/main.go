// Command compress copies standard input to standard output through the
// compressor kiln writes layers with (pkg/archive.Compress, its fixed
// settings), so that a shell pipeline can measure the floor of a build as
// the issue defines it:
//
//	tar -cf - -C CONTEXT . | compress | openssl dgst -sha256
//
// Usage: compress [-compression gzip|zstd|none]
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/kiln-build/kiln/pkg/archive"
)

func main() {
	comp := flag.String("compression", "gzip", "compression: gzip, zstd or none")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: compress [-compression gzip|zstd|none] <IN >OUT\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	c, err := archive.ParseCompression(*comp)
	if err != nil {
		fatal(err)
	}
	if err := run(os.Stdout, os.Stdin, c); err != nil {
		fatal(err)
	}
}

// run compresses in to out with c.
func run(out io.Writer, in io.Reader, c archive.Compression) error {
	// The compressor emits blocks of varying size; batch them for the pipe.
	bw := bufio.NewWriterSize(out, 256<<10)
	zw, err := archive.Compress(bw, c)
	if err != nil {
		return err
	}
	// One read per MiB, as kiln reads layer content.
	if _, err := io.CopyBuffer(onlyWriter{zw}, in, make([]byte, 1<<20)); err != nil {
		zw.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// onlyWriter hides io.ReaderFrom so that CopyBuffer uses its buffer.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "compress:", err)
	os.Exit(1)
}
