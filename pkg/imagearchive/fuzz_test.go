package imagearchive

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/oci"
)

// fuzzSeedArchives are a docker archive, an OCI archive and a gzipped
// docker archive of a small image, for the archive fuzz target's corpus.
func fuzzSeedArchives(f *testing.F) [][]byte {
	f.Helper()
	img, err := random.Image(64, 2)
	if err != nil {
		f.Fatal(err)
	}
	var out [][]byte
	for _, write := range []func(io.Writer, []Item) error{WriteDockerArchive, WriteOCIArchive} {
		var buf bytes.Buffer
		if err := write(&buf, []Item{{Ref: "localhost/app:1", Artifact: img}}); err != nil {
			f.Fatal(err)
		}
		out = append(out, buf.Bytes())
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(out[0])
	zw.Close()
	return append(out, gz.Bytes(), []byte("not an archive"))
}

// FuzzReadArchive feeds `kiln load` input (docker and OCI archives, plain
// or compressed) to Read and reads what it returns: never a panic,
// whatever the bytes; errors are fine.
func FuzzReadArchive(f *testing.F) {
	for _, a := range fuzzSeedArchives(f) {
		f.Add(a)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<20 {
			return
		}
		p := filepath.Join(t.TempDir(), "a.tar")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		items, err := Read(p)
		if err != nil {
			return
		}
		for _, it := range items {
			if img, ok := oci.AsImage(it.Artifact); ok {
				testutil.ReadImage(img)
			}
			if idx, ok := oci.AsIndex(it.Artifact); ok {
				if im, err := idx.IndexManifest(); err == nil {
					for _, d := range im.Manifests {
						if img, err := idx.Image(d.Digest); err == nil {
							testutil.ReadImage(img)
						}
					}
				}
			}
		}
	})
}
