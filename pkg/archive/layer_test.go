package archive

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"
)

type layerFile struct {
	name string
	data []byte
}

func fillFiles(files []layerFile) func(tw *TarWriter) error {
	return func(tw *TarWriter) error {
		if err := tw.WriteHeader(&tar.Header{Name: "data", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
			return err
		}
		for _, f := range files {
			if err := tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.data)), ModTime: time.Now()}); err != nil {
				return err
			}
			if _, err := tw.Write(f.data); err != nil {
				return err
			}
		}
		return nil
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestWriteLayer(t *testing.T) {
	files := []layerFile{
		{"data/random", testPayload(3<<20, 7)},
		{"data/text", bytes.Repeat([]byte("compressible line of text\n"), 50000)},
		{"data/empty", nil},
	}
	ts := time.Unix(1234567890, 0)
	opts := TarOptions{Timestamp: &ts}
	prev := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(prev)
	for _, c := range []Compression{Gzip, Zstd, None} {
		t.Run(string(c), func(t *testing.T) {
			var out bytes.Buffer
			runtime.GOMAXPROCS(1)
			info, err := WriteLayer(&out, c, opts, fillFiles(files))
			if err != nil {
				t.Fatal(err)
			}
			runtime.GOMAXPROCS(max(2, prev))
			var out2 bytes.Buffer
			info2, err := WriteLayer(&out2, c, opts, fillFiles(files))
			if err != nil {
				t.Fatal(err)
			}
			if info != info2 || !bytes.Equal(out.Bytes(), out2.Bytes()) {
				t.Fatalf("not deterministic: %+v vs %+v", info, info2)
			}
			if info.Compression != c || info.Size != int64(out.Len()) {
				t.Errorf("info %+v, wrote %d bytes", info, out.Len())
			}
			if info.Digest.Algorithm != "sha256" || info.Digest.Hex != sha(out.Bytes()) {
				t.Errorf("Digest %s, want sha256:%s", info.Digest, sha(out.Bytes()))
			}
			rc, _, err := Decompress(bytes.NewReader(out.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			plain, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			if info.DiffID.Hex != sha(plain) {
				t.Errorf("DiffID %s, want sha256:%s", info.DiffID, sha(plain))
			}
			if c == None && info.DiffID != info.Digest {
				t.Errorf("uncompressed layer: DiffID %s != Digest %s", info.DiffID, info.Digest)
			}
			hdrs, contents := readTar(t, plain)
			if len(hdrs) != 4 || contents["data/random"] != string(files[0].data) || contents["data/text"] != string(files[1].data) {
				t.Fatalf("layer content: %d entries", len(hdrs))
			}
			for _, h := range hdrs {
				if !h.ModTime.Equal(ts) {
					t.Errorf("%s: ModTime %v, want %v", h.Name, h.ModTime, ts)
				}
			}
		})
	}
}

func TestWriteLayerErrors(t *testing.T) {
	boom := errors.New("boom")
	_, err := WriteLayer(io.Discard, Gzip, TarOptions{}, func(tw *TarWriter) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("fill error not returned: %v", err)
	}
	_, err = WriteLayer(io.Discard, Gzip, TarOptions{}, func(tw *TarWriter) error {
		return tw.WriteHeader(&tar.Header{Name: "../x", Typeflag: tar.TypeReg})
	})
	if err == nil || !strings.Contains(err.Error(), "../x") {
		t.Fatalf("bad name: %v", err)
	}
	for _, c := range []Compression{Gzip, Zstd, None} {
		_, err = WriteLayer(failWriter{}, c, TarOptions{}, fillFiles([]layerFile{{"data/x", testPayload(3<<20, 3)}}))
		if err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Fatalf("%s: write error not returned: %v", c, err)
		}
	}
	if _, err := WriteLayer(io.Discard, "brotli", TarOptions{}, fillFiles(nil)); err == nil {
		t.Fatal("unknown compression accepted")
	}
	// A short entry (less content than its header's size) is an error.
	_, err = WriteLayer(io.Discard, None, TarOptions{}, func(tw *TarWriter) error {
		return tw.WriteHeader(&tar.Header{Name: "short", Typeflag: tar.TypeReg, Size: 10})
	})
	if err == nil {
		t.Fatal("short entry accepted")
	}
}

type failWriter struct{}

func (failWriter) Write(p []byte) (int, error) { return 0, errors.New("disk full") }

// BenchmarkWriteLayer writes a 64 MiB layer: half incompressible files,
// half compressible text, in files of 1 MiB and 4 KiB.
func BenchmarkWriteLayer(b *testing.B) {
	random := make([]byte, 32<<20)
	rand.NewChaCha8([32]byte{1}).Read(random)
	line := []byte("INFO 2024-05-06 builder: step 3/7 COPY --from=build /out /app done\n")
	text := bytes.Repeat(line, (32<<20)/len(line)+1)[:32<<20]
	var files []layerFile
	for i := 0; i < 32; i++ {
		files = append(files, layerFile{fmt.Sprintf("data/big/%02d", i), random[i<<20 : (i+1)<<20]})
	}
	for i := 0; i < (32<<20)/(4<<10); i++ {
		files = append(files, layerFile{fmt.Sprintf("data/small/%05d", i), text[i*(4<<10) : (i+1)*(4<<10)]})
	}
	total := int64(64 << 20)
	for _, c := range []Compression{Gzip, Zstd, None} {
		b.Run(string(c), func(b *testing.B) {
			b.SetBytes(total)
			b.ReportAllocs()
			var size int64
			for b.Loop() {
				info, err := WriteLayer(io.Discard, c, TarOptions{}, fillFiles(files))
				if err != nil {
					b.Fatal(err)
				}
				size = info.Size
			}
			b.ReportMetric(float64(size)/float64(total)*100, "%size")
		})
	}
}
