package store

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
)

// remoteLayer is a gzip layer the store does not hold (as a registry's).
type remoteLayer struct {
	v1.Layer
	blob   []byte
	digest v1.Hash
	size   int64
}

func (l remoteLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l remoteLayer) Size() (int64, error)                { return l.size, nil }
func (l remoteLayer) MediaType() (types.MediaType, error) { return types.DockerLayer, nil }
func (l remoteLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.blob)), nil
}

func gzipTar(t *testing.T) (blob, content []byte) {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, name := range []string{"etc/", "etc/hostname"} {
		h := &tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg, Size: 4}
		if strings.HasSuffix(name, "/") {
			h.Typeflag, h.Size, h.Mode = tar.TypeDir, 0, 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("box\n"))
		}
	}
	tw.Close()
	var gb bytes.Buffer
	zw := gzip.NewWriter(&gb)
	zw.Write(tb.Bytes())
	zw.Close()
	return gb.Bytes(), tb.Bytes()
}

// TestOpenLayerContent: a layer read for its content alone is verified
// against its diff ID (and its size against the manifest's) and is not
// kept; OpenVerifiedLayer keeps it, once its digest matched.
func TestOpenLayerContent(t *testing.T) {
	blob, content := gzipTar(t)
	l := remoteLayer{blob: blob, digest: sha256Hash(blob), size: int64(len(blob))}
	diffID := sha256Hash(content)
	read := func(s *Store, l v1.Layer, diffID v1.Hash, keep bool) ([]byte, error) {
		open := s.OpenLayerContent
		if keep {
			open = s.OpenVerifiedLayer
		}
		rc, err := open(l, diffID)
		if err != nil {
			return nil, err
		}
		got, rerr := io.ReadAll(rc)
		if cerr := rc.Close(); rerr == nil {
			rerr = cerr
		}
		return got, rerr
	}

	s := newStore(t)
	got, err := read(s, l, diffID, false)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("OpenLayerContent: %d bytes, %v", len(got), err)
	}
	if s.HasBlob(l.digest) {
		t.Error("OpenLayerContent kept the layer in the store")
	}
	if _, err := read(s, l, sha256Hash([]byte("other")), false); err == nil || !strings.Contains(err.Error(), "diff ID") {
		t.Errorf("OpenLayerContent with a wrong diff ID: %v", err)
	}
	short := l
	short.size--
	if _, err := read(s, short, diffID, false); err == nil || !strings.Contains(err.Error(), "size mismatch") {
		t.Errorf("OpenLayerContent of a longer blob than the manifest says: %v", err)
	}

	if got, err := read(s, l, diffID, true); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("OpenVerifiedLayer: %d bytes, %v", len(got), err)
	}
	if !s.HasBlob(l.digest) {
		t.Error("OpenVerifiedLayer did not keep the layer")
	}
	wrong := l
	wrong.digest = sha256Hash([]byte("not the blob"))
	if _, err := read(newStore(t), wrong, diffID, true); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Errorf("OpenVerifiedLayer with a wrong digest: %v", err)
	}
	// A layer the store holds is read from it.
	if got, err := read(s, remoteLayer{digest: l.digest, size: l.size}, diffID, false); err != nil || !bytes.Equal(got, content) {
		t.Errorf("OpenLayerContent of a stored layer: %d bytes, %v", len(got), err)
	}
}
