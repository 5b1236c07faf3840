package archive

import (
	"archive/tar"
	"bytes"
	stdgzip "compress/gzip"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/ulikunitz/xz"
)

func TestParseCompression(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Compression
		err  bool
	}{
		{"gzip", Gzip, false},
		{"GZIP", Gzip, false},
		{"zstd", Zstd, false},
		{"none", None, false},
		{"uncompressed", None, false},
		{" zstd ", Zstd, false},
		{"", "", true},
		{"lz4", "", true},
		{"gz", "", true},
	} {
		got, err := ParseCompression(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseCompression(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.err)
		}
		if err != nil && !strings.Contains(err.Error(), tc.in) {
			t.Errorf("ParseCompression(%q) error %q does not name the input", tc.in, err)
		}
	}
}

func TestMediaType(t *testing.T) {
	for _, tc := range []struct {
		c    Compression
		oci  bool
		want types.MediaType
	}{
		{Gzip, true, types.OCILayer},
		{Gzip, false, types.DockerLayer},
		{Zstd, true, types.OCILayerZStd},
		{Zstd, false, types.OCILayerZStd},
		{None, true, types.OCIUncompressedLayer},
		{None, false, types.DockerUncompressedLayer},
	} {
		if got := tc.c.MediaType(tc.oci); got != tc.want {
			t.Errorf("%s.MediaType(%v) = %s, want %s", tc.c, tc.oci, got, tc.want)
		}
	}
}

// testPayload returns n bytes mixing incompressible and compressible runs.
func testPayload(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	out := make([]byte, 0, n)
	text := []byte("the quick brown fox jumps over the lazy dog; kiln builds images. ")
	for len(out) < n {
		run := 1 + r.IntN(200<<10)
		if r.IntN(2) == 0 {
			for i := 0; i < run && len(out) < n; i++ {
				out = append(out, byte(r.Uint32()))
			}
		} else {
			for i := 0; i < run && len(out) < n; i++ {
				out = append(out, text[i%len(text)])
			}
		}
	}
	return out
}

func compressBytes(t testing.TB, c Compression, data []byte) []byte {
	t.Helper()
	return compressChunked(t, c, data, 12345)
}

// compressChunked compresses data written in chunks of the given size.
func compressChunked(t testing.TB, c Compression, data []byte, chunk int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := Compress(&buf, c)
	if err != nil {
		t.Fatal(err)
	}
	for rest := data; len(rest) > 0; {
		n := min(len(rest), chunk)
		if _, err := w.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestCompressDeterministicAcrossGOMAXPROCS(t *testing.T) {
	data := testPayload(5<<20+777, 1)
	prev := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(prev)
	for _, c := range []Compression{Gzip, Zstd, None} {
		t.Run(string(c), func(t *testing.T) {
			runtime.GOMAXPROCS(1)
			one := compressBytes(t, c, data)
			runtime.GOMAXPROCS(max(4, prev))
			many := compressBytes(t, c, data)
			again := compressBytes(t, c, data)
			if !bytes.Equal(one, many) || !bytes.Equal(many, again) {
				t.Fatalf("%s output differs between GOMAXPROCS 1 (%d bytes) and %d (%d, %d bytes)", c, len(one), max(4, prev), len(many), len(again))
			}
			// Nor may it depend on how the input is split into writes.
			for _, chunk := range []int{len(data), 1 << 20, 4096, 511} {
				if other := compressChunked(t, c, data, chunk); !bytes.Equal(one, other) {
					t.Fatalf("%s output differs with writes of %d bytes", c, chunk)
				}
			}
			if c != None && len(one) >= len(data) {
				t.Errorf("%s did not compress: %d -> %d", c, len(data), len(one))
			}
			rc, format, err := Decompress(bytes.NewReader(one))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			rc.Close()
			wantFormat := string(c)
			if c == None {
				wantFormat = ""
			}
			if format != wantFormat || !bytes.Equal(got, data) {
				t.Fatalf("Decompress: format %q (want %q), %d bytes equal=%v", format, wantFormat, len(got), bytes.Equal(got, data))
			}
		})
	}
}

func TestGzipReadableByStdlib(t *testing.T) {
	data := testPayload(3<<20, 2)
	gz := compressBytes(t, Gzip, data)
	zr, err := stdgzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false)
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("compress/gzip read different content")
	}
	if !zr.ModTime.IsZero() || zr.Name != "" || zr.OS != 255 {
		t.Errorf("gzip header: ModTime %v, Name %q, OS %d; want zero, empty, 255", zr.ModTime, zr.Name, zr.OS)
	}
	// The header is fixed bytes: magic, deflate, no flags, zero mtime.
	if !bytes.Equal(gz[:8], []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0}) || gz[9] != 255 {
		t.Errorf("gzip header bytes % x", gz[:10])
	}
	// An empty stream is a valid gzip stream too.
	empty := compressBytes(t, Gzip, nil)
	zr, err = stdgzip.NewReader(bytes.NewReader(empty))
	if err != nil {
		t.Fatalf("empty gzip stream: %v", err)
	}
	if b, err := io.ReadAll(zr); err != nil || len(b) != 0 {
		t.Fatalf("empty gzip stream: %q, %v", b, err)
	}
}

func TestCompressUnknown(t *testing.T) {
	if _, err := Compress(io.Discard, "lz4"); err == nil || !strings.Contains(err.Error(), "lz4") {
		t.Fatalf("Compress(lz4) error = %v", err)
	}
}

func TestDecompressFormats(t *testing.T) {
	plain := []byte("hello from bzip2\n")
	var xzBuf bytes.Buffer
	xw, err := xz.NewWriter(&xzBuf)
	if err != nil {
		t.Fatal(err)
	}
	xw.Write(plain)
	if err := xw.Close(); err != nil {
		t.Fatal(err)
	}
	bz, err := os.ReadFile("testdata/hello.txt.bz2")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		in     []byte
		format string
		want   []byte
	}{
		{"gzip", compressBytes(t, Gzip, plain), "gzip", plain},
		{"zstd", compressBytes(t, Zstd, plain), "zstd", plain},
		{"xz", xzBuf.Bytes(), "xz", plain},
		{"bzip2", bz, "bzip2", plain},
		{"plain", plain, "", plain},
		{"short plain", []byte{0x1f}, "", []byte{0x1f}},
		{"empty", nil, "", nil},
		{"BZ but not bzip2", []byte("BZhello"), "", []byte("BZhello")},
		{"tar", mkTar(t, file("a", "b")), "", mkTar(t, file("a", "b"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, format, err := Decompress(bytes.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			if format != tc.format || !bytes.Equal(got, tc.want) {
				t.Fatalf("got format %q and %q, want %q and %q", format, got, tc.format, tc.want)
			}
		})
	}
	// A corrupt gzip header is an error that names the format.
	if _, _, err := Decompress(bytes.NewReader([]byte{0x1f, 0x8b, 0, 0})); err == nil || !strings.Contains(err.Error(), "gzip") {
		t.Fatalf("corrupt gzip: error %v", err)
	}
}

func TestIsTar(t *testing.T) {
	tarData := mkTar(t, file("hello.txt", "hi"))
	gnu := func() []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "x", Typeflag: tar.TypeReg, Format: tar.FormatGNU})
		tw.Close()
		return buf.Bytes()
	}()
	corrupt := append([]byte(nil), tarData...)
	corrupt[0] ^= 0xff
	v7 := append([]byte(nil), tarData[:512]...)
	copy(v7[257:265], make([]byte, 8))
	// Recompute the checksum for the v7 header (magic and version zeroed).
	sum := 0
	for i, c := range v7 {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int(c)
	}
	copy(v7[148:156], []byte(octal6(sum)+"\x00 "))
	for _, tc := range []struct {
		name string
		in   []byte
		want bool
	}{
		{"ustar", tarData, true},
		{"gnu", gnu, true},
		{"v7", v7, true},
		{"bad checksum", corrupt, false},
		{"short", tarData[:511], false},
		{"zeros", make([]byte, 1024), false},
		{"gzip", compressBytes(t, Gzip, tarData), false},
		{"text", bytes.Repeat([]byte("hello world "), 100), false},
	} {
		if got := IsTar(tc.in); got != tc.want {
			t.Errorf("IsTar(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func octal6(n int) string {
	s := []byte("000000")
	for i := 5; i >= 0; i-- {
		s[i] = byte('0' + n%8)
		n /= 8
	}
	return string(s)
}

// A layer's media type picks its decompressor; a stream's magic number
// names its compression.
func TestCompressionOfAndNewReader(t *testing.T) {
	for mt, want := range map[types.MediaType]Compression{
		types.OCILayer: Gzip, types.DockerLayer: Gzip, types.OCILayerZStd: Zstd,
		types.OCIUncompressedLayer: None, "application/vnd.example.layer.v1.tar+gzip": Gzip,
	} {
		if got, ok := CompressionOf(mt); !ok || got != want {
			t.Errorf("CompressionOf(%s) = %q, %v; want %q", mt, got, ok, want)
		}
	}
	if _, ok := CompressionOf("application/octet-stream"); ok {
		t.Errorf("CompressionOf of a media type that says nothing: ok")
	}
	plain := bytes.Repeat([]byte("kiln layer "), 1000)
	for _, c := range []Compression{Gzip, Zstd, None} {
		var blob bytes.Buffer
		w, err := Compress(&blob, c)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(plain)
		w.Close()
		if got, want := Sniff(blob.Bytes()[:SniffLen]), map[Compression]string{Gzip: "gzip", Zstd: "zstd", None: ""}[c]; got != want {
			t.Errorf("Sniff of a %s stream = %q", c, got)
		}
		r, err := NewReader(&blob, c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, plain) {
			t.Errorf("%s: read back %d bytes, %v", c, len(got), err)
		}
	}
}
