package main

import (
	"bytes"
	"io"
	"testing"

	"github.com/kiln-build/kiln/pkg/archive"
)

// TestRunRoundTrip: what compress writes is the input in kiln's layer
// compression: it decompresses to the input, and its bytes are exactly
// what archive.Compress gives (the same settings as kiln's layers).
func TestRunRoundTrip(t *testing.T) {
	in := bytes.Repeat([]byte("kiln layer content 0123456789\n"), 100000) // ~3 MB, several blocks
	for _, c := range []archive.Compression{archive.Gzip, archive.Zstd, archive.None} {
		var out bytes.Buffer
		if err := run(&out, bytes.NewReader(in), c); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		r, format, err := archive.Decompress(bytes.NewReader(out.Bytes()))
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		got, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if !bytes.Equal(got, in) {
			t.Errorf("%s (%q): round trip changed the content (%d bytes in, %d out)", c, format, len(in), len(got))
		}
		var want bytes.Buffer
		zw, err := archive.Compress(&want, c)
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(in)
		zw.Close()
		if !bytes.Equal(out.Bytes(), want.Bytes()) {
			t.Errorf("%s: output differs from archive.Compress (%d vs %d bytes)", c, out.Len(), want.Len())
		}
	}
}
