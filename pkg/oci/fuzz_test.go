package oci

import (
	"bytes"
	"io"
	"os"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/kiln-build/kiln/internal/testutil"
)

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
		src := memBlobs{SHA256(config): config, SHA256(manifest): manifest}
		h := SHA256(manifest)
		if img, err := LoadImage(src, h, ""); err == nil {
			testutil.ReadImage(img)
		}
		if x, err := LoadIndex(src, h, ""); err == nil {
			if im, err := x.IndexManifest(); err == nil {
				for _, d := range im.Manifests {
					_, _ = x.Image(d.Digest)
					_, _ = x.ImageIndex(d.Digest)
				}
			}
		}
	})
}

// memBlobs is a BlobSource in memory.
type memBlobs map[v1.Hash][]byte

func (m memBlobs) OpenBlob(h v1.Hash) (io.ReadCloser, error) {
	b, ok := m[h]
	if !ok {
		return nil, os.ErrNotExist
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}
