package archive

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"github.com/ulikunitz/xz"
)

// Compression names the compression applied to a layer blob.
type Compression string

// The compressions kiln writes.
const (
	// None stores the tar stream as is.
	None Compression = "none"
	// Gzip compresses with gzip (parallel, fixed settings).
	Gzip Compression = "gzip"
	// Zstd compresses with zstandard (fixed settings).
	Zstd Compression = "zstd"
)

// Fixed compressor settings. They are part of kiln's output format: changing
// any of them changes layer digests, which invalidates every cached layer.
const (
	// GzipLevel is the deflate level used for gzip layers.
	GzipLevel = 5
	// GzipBlockSize is the size of the independently compressed blocks of a
	// gzip layer (each block uses the previous block's last 32 KiB as its
	// dictionary). Output depends on it, never on the number of CPUs.
	GzipBlockSize = 1 << 20
	// maxGzipBlocks is how many blocks may be compressed at once (see
	// gzipBlocks); it does not affect the output, only memory and
	// parallelism.
	maxGzipBlocks = 4
	// ZstdLevel is the zstandard encoder level used for zstd layers.
	ZstdLevel = zstd.SpeedDefault
	// zstdConcurrency is fixed so that no setting depends on GOMAXPROCS; the
	// stream encoder's output does not depend on it when job-based
	// parallelism (WithConcurrentBlocks) is off.
	zstdConcurrency = 2
	// gzipOS is the OS byte of the gzip header ("unknown"), as written by
	// Go's compress/gzip and go-containerregistry.
	gzipOS = 255
)

// ParseCompression parses a compression name: "gzip", "zstd", "none" or
// "uncompressed" (case-insensitive).
func ParseCompression(s string) (Compression, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "gzip":
		return Gzip, nil
	case "zstd":
		return Zstd, nil
	case "none", "uncompressed":
		return None, nil
	}
	return "", fmt.Errorf("unknown compression %q (want gzip, zstd or uncompressed)", s)
}

// String returns the compression's name.
func (c Compression) String() string { return string(c) }

// MediaType returns the layer media type for this compression in an OCI
// (oci true) or Docker schema 2 manifest. Docker has no zstd layer type, so
// zstd layers use the OCI zstd type in both.
func (c Compression) MediaType(oci bool) types.MediaType {
	switch c {
	case Zstd:
		return types.OCILayerZStd
	case None:
		if oci {
			return types.OCIUncompressedLayer
		}
		return types.DockerUncompressedLayer
	default:
		if oci {
			return types.OCILayer
		}
		return types.DockerLayer
	}
}

// Compress returns a writer that compresses what is written to it with c
// into w. Closing it flushes the compressed stream; it never closes w.
// The settings are fixed, so the same input gives the same bytes on every
// machine regardless of its number of CPUs.
func Compress(w io.Writer, c Compression) (io.WriteCloser, error) {
	switch c {
	case None:
		return nopWriteCloser{w}, nil
	case Gzip:
		zw, err := pgzip.NewWriterLevel(w, GzipLevel)
		if err != nil {
			return nil, fmt.Errorf("gzip writer: %w", err)
		}
		if err := zw.SetConcurrency(GzipBlockSize, gzipBlocks()); err != nil {
			return nil, fmt.Errorf("gzip writer: %w", err)
		}
		// pgzip writes ModTime.Unix() as is: the zero time would not
		// give the zero field that means "no time".
		zw.ModTime = time.Unix(0, 0)
		zw.Name = ""
		zw.Comment = ""
		zw.Extra = nil
		zw.OS = gzipOS
		return zw, nil
	case Zstd:
		zw, err := zstd.NewWriter(w,
			zstd.WithEncoderLevel(ZstdLevel),
			zstd.WithEncoderConcurrency(zstdConcurrency),
			zstd.WithConcurrentBlocks(false),
			zstd.WithEncoderCRC(true),
			zstd.WithZeroFrames(true),
			zstd.WithWindowSize(8<<20),
		)
		if err != nil {
			return nil, fmt.Errorf("zstd writer: %w", err)
		}
		return zw, nil
	}
	return nil, fmt.Errorf("unknown compression %q", string(c))
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// Magic numbers of the formats Decompress recognises.
var (
	magicGzip  = []byte{0x1f, 0x8b}
	magicBzip2 = []byte("BZh")
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// Decompress sniffs the compression of r by its magic number (gzip, bzip2,
// xz, zstd) and returns a reader of the decompressed stream and the format's
// name ("gzip", "bzip2", "xz", "zstd", or "" for an uncompressed stream,
// which is passed through with nothing lost). Closing the returned reader
// releases the decompressor; it does not close r. A compressed stream is
// bounded by CheckExpansion.
func Decompress(r io.Reader) (io.ReadCloser, string, error) {
	cr := NewCountingReader(r)
	rc, format, err := decompress(cr)
	if err != nil || format == "" {
		return rc, format, err
	}
	return &limitedReadCloser{Reader: CheckExpansion(rc, cr.Count, format+" stream"), c: rc}, format, nil
}

type limitedReadCloser struct {
	io.Reader
	c io.Closer
}

func (l *limitedReadCloser) Close() error { return l.c.Close() }

// SniffLen is how many first bytes of a stream Sniff needs at most.
const SniffLen = 6

// Sniff names the compression whose magic number head (a stream's first
// SniffLen bytes, or all of a shorter one) starts with: "gzip", "bzip2",
// "xz", "zstd", or "" for none of them.
func Sniff(head []byte) string {
	switch {
	case bytes.HasPrefix(head, magicGzip):
		return "gzip"
	case bytes.HasPrefix(head, magicBzip2) && len(head) >= 4 && head[3] >= '1' && head[3] <= '9':
		return "bzip2"
	case bytes.HasPrefix(head, magicXz):
		return "xz"
	case bytes.HasPrefix(head, magicZstd):
		return "zstd"
	}
	return ""
}

func decompress(r io.Reader) (io.ReadCloser, string, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(SniffLen)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, "", fmt.Errorf("sniff compression: %w", err)
	}
	format := Sniff(head)
	switch format {
	case "gzip", "zstd":
		rc, err := NewReader(br, Compression(format))
		if err != nil {
			return nil, format, fmt.Errorf("%s stream: %w", format, err)
		}
		return rc, format, nil
	case "bzip2":
		return io.NopCloser(bzip2.NewReader(br)), format, nil
	case "xz":
		xr, err := xz.NewReader(br)
		if err != nil {
			return nil, format, fmt.Errorf("xz stream: %w", err)
		}
		return io.NopCloser(xr), format, nil
	}
	return io.NopCloser(br), "", nil
}

// NewReader returns a reader of r decompressed as c (None: r as it is),
// without sniffing: for layers, whose media type says their compression.
// Closing it releases the decompressor; it does not close r.
func NewReader(r io.Reader, c Compression) (io.ReadCloser, error) {
	switch c {
	case Gzip:
		return gzip.NewReader(r)
	case Zstd:
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, err
		}
		return zstdReadCloser{zr}, nil
	case None:
		return io.NopCloser(r), nil
	}
	return nil, fmt.Errorf("unknown compression %q", c)
}

// Read-ahead of NewReaderAhead: how much decompressed output may be made
// ahead of its reader, and the input buffer of the decompressor.
const (
	aheadChunkSize = 256 << 10
	aheadChunks    = 4
	aheadInput     = 64 << 10
)

// NewReaderAhead is NewReader with the decompression done on a goroutine
// of its own, up to 1 MiB ahead of the reader: for a layer, whose reader
// has work of its own (hashing, indexing or extracting what it reads),
// which then runs beside the decompression instead of in turn with it.
// The compressed header is read before it returns. Close stops the
// goroutine and waits for it, so a read of r that may block (a network
// stream) must be made to return first, by closing r's source; it does
// not close r.
func NewReaderAhead(r io.Reader, c Compression) (io.ReadCloser, error) {
	if c == None {
		return NewReader(r, c)
	}
	// A *bufio.Reader is what klauspost's inflater reads fastest.
	rc, err := NewReader(bufio.NewReaderSize(r, aheadInput), c)
	if err != nil {
		return nil, err
	}
	return &aheadReadCloser{AheadReader: ReadAhead(rc, aheadChunkSize, aheadChunks), dec: rc}, nil
}

type aheadReadCloser struct {
	*AheadReader
	dec io.Closer
}

func (a *aheadReadCloser) Close() error {
	a.Stop()
	return a.dec.Close()
}

// CompressionOf is the compression a layer media type names; ok is false
// for a media type that does not say (then Decompress sniffs it).
func CompressionOf(mt types.MediaType) (c Compression, ok bool) {
	switch mt {
	case types.OCILayer, types.OCIRestrictedLayer, types.DockerLayer, types.DockerForeignLayer:
		return Gzip, true
	case types.OCILayerZStd:
		return Zstd, true
	case types.OCIUncompressedLayer, types.OCIUncompressedRestrictedLayer, types.DockerUncompressedLayer:
		return None, true
	}
	m := string(mt)
	switch {
	case strings.HasSuffix(m, "+gzip") || strings.HasSuffix(m, ".gzip"):
		return Gzip, true
	case strings.HasSuffix(m, "+zstd"):
		return Zstd, true
	case strings.HasSuffix(m, ".tar"):
		return None, true
	}
	return "", false
}

type zstdReadCloser struct{ d *zstd.Decoder }

func (z zstdReadCloser) Read(p []byte) (int, error) { return z.d.Read(p) }
func (z zstdReadCloser) Close() error               { z.d.Close(); return nil }

// IsTar reports whether header (the first bytes of a file, at least 512)
// starts with a tar header: its checksum is valid, and, when it carries a
// magic, the magic is ustar's or GNU's. ADD uses it to decide whether to
// extract a local archive.
func IsTar(header []byte) bool {
	if len(header) < 512 {
		return false
	}
	b := header[:512]
	magic := b[257:265]
	switch {
	case string(magic[:6]) == "ustar\x00", string(magic) == "ustar  \x00":
	case bytes.Equal(magic, make([]byte, 8)):
		// V7 tar: no magic; the checksum decides.
	default:
		return false
	}
	field := strings.TrimRight(strings.TrimLeft(string(b[148:156]), " \x00"), " \x00")
	if field == "" {
		return false
	}
	want, err := strconv.ParseInt(field, 8, 64)
	if err != nil {
		return false
	}
	var unsigned, signed int64
	for i, c := range b {
		if i >= 148 && i < 156 {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	// An all-zero block (end of archive) sums to 8*' ' and is not a header.
	if want == 8*' ' && bytes.Equal(b[:148], make([]byte, 148)) {
		return false
	}
	return want == unsigned || want == signed
}

// gzipBlocks is how many blocks a gzip layer compresses at once: one per
// CPU, at least 2 (one compressed while the next fills) and at most
// maxGzipBlocks. Each block in flight holds its input, its output and a
// deflate state (about 3 MiB at GzipLevel): on a 2-CPU machine a third and
// fourth block only wait for a CPU, and a cold java-layers build (up to 3
// layers written at once) peaked at 82.6 MiB with 4 and 77.9 MiB with 2
// (medians of 3, the same CPU time). The output is the same for any count
// (TestCompressDeterministicAcrossGOMAXPROCS).
func gzipBlocks() int {
	return min(maxGzipBlocks, max(2, runtime.GOMAXPROCS(0)))
}
