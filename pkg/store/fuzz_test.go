package store

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"

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
// or compressed) to ReadArchive and reads what it returns: never a panic,
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
		items, err := ReadArchive(p)
		if err != nil {
			return
		}
		for _, it := range items {
			if img, ok := oci.AsImage(it.Artifact); ok {
				readImage(img)
			}
			if idx, ok := oci.AsIndex(it.Artifact); ok {
				if im, err := idx.IndexManifest(); err == nil {
					for _, d := range im.Manifests {
						if img, err := idx.Image(d.Digest); err == nil {
							readImage(img)
						}
					}
				}
			}
		}
	})
}

// readImage reads everything of img, ignoring errors.
func readImage(img v1.Image) {
	_, _ = img.ConfigFile()
	_, _ = img.Manifest()
	layers, _ := img.Layers()
	for _, l := range layers {
		if rc, err := l.Uncompressed(); err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(rc, 4<<20))
			rc.Close()
		}
		_, _ = l.DiffID()
	}
}

// FuzzManifest opens arbitrary bytes as a stored image and index (with a
// config blob), as the store does with what a registry or an archive sent:
// never a panic.
func FuzzManifest(f *testing.F) {
	img, err := random.Image(64, 1)
	if err != nil {
		f.Fatal(err)
	}
	raw, _ := img.RawManifest()
	cfg, _ := img.RawConfigFile()
	f.Add(raw, cfg)
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img})
	rawIdx, _ := idx.RawManifest()
	f.Add(rawIdx, cfg)
	f.Add([]byte(`{"schemaVersion":2,"config":{"digest":"sha256:../../etc","size":-1},"layers":[{"size":-5}]}`), []byte(`{"rootfs":{"diff_ids":["x"]}}`))
	f.Add([]byte(`{"manifests":[{"digest":"sha256:0000","mediaType":"application/vnd.oci.image.index.v1+json"}]}`), []byte(`{}`))
	f.Fuzz(func(t *testing.T, manifest, config []byte) {
		src := memBlobs{sha256Hash(config): config, sha256Hash(manifest): manifest}
		h := sha256Hash(manifest)
		if img, err := loadImage(src, h, ""); err == nil {
			readImage(img)
		}
		if x, err := loadIndex(src, h, ""); err == nil {
			if im, err := x.IndexManifest(); err == nil {
				for _, d := range im.Manifests {
					_, _ = x.Image(d.Digest)
					_, _ = x.ImageIndex(d.Digest)
				}
			}
		}
	})
}

// memBlobs is a blobSource in memory.
type memBlobs map[v1.Hash][]byte

func (m memBlobs) openBlob(h v1.Hash) (io.ReadCloser, error) {
	b, ok := m[h]
	if !ok {
		return nil, os.ErrNotExist
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}
