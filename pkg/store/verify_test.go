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

// TestOpenVerifiedLayer: a layer the store does not hold is read
// verified (content against its diff ID, size and digest against the
// manifest's) and kept once all matched; a stored one is read from the
// store.
func TestOpenVerifiedLayer(t *testing.T) {
	blob, content := gzipTar(t)
	l := remoteLayer{blob: blob, digest: sha256Hash(blob), size: int64(len(blob))}
	diffID := sha256Hash(content)
	read := func(s *Store, l v1.Layer, diffID v1.Hash) ([]byte, error) {
		rc, err := s.OpenVerifiedLayer(l, diffID)
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
	short := l
	short.size--
	if _, err := read(s, short, diffID); err == nil || !strings.Contains(err.Error(), "size mismatch") {
		t.Errorf("a longer blob than the manifest says: %v", err)
	}
	wrong := l
	wrong.digest = sha256Hash([]byte("not the blob"))
	if _, err := read(s, wrong, diffID); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Errorf("a wrong digest: %v", err)
	}
	if s.HasBlob(l.digest) || s.HasBlob(wrong.digest) {
		t.Fatal("a blob that failed verification was kept")
	}
	// The blob matches its digest (and may be kept as such); the content
	// read is still refused.
	if _, err := read(s, l, sha256Hash([]byte("other"))); err == nil || !strings.Contains(err.Error(), "diff ID") {
		t.Errorf("a wrong diff ID: %v", err)
	}
	if got, err := read(s, l, diffID); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("read: %d bytes, %v", len(got), err)
	}
	if !s.HasBlob(l.digest) {
		t.Error("the verified layer is not in the store")
	}
	// A layer the store holds is read from it.
	if got, err := read(s, remoteLayer{digest: l.digest, size: l.size}, diffID); err != nil || !bytes.Equal(got, content) {
		t.Errorf("a stored layer: %d bytes, %v", len(got), err)
	}
}
