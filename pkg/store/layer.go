package store

import (
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/pkg/archive"
)

// blobSource is anything that can open blobs by digest: the store, an
// exported layout, an OCI archive or layout being read.
type blobSource interface {
	openBlob(h v1.Hash) (io.ReadCloser, error)
}

// Layer returns a v1.Layer backed by the stored blob desc.Digest. Digest,
// Size and MediaType come from desc and DiffID from diffID; Compressed opens
// the blob file and Uncompressed decompresses it according to the media type
// (gzip, zstd or plain tar). The blob is never read into memory. A zero
// desc.Size is filled in from the blob; a different one is an error. A
// blob the store does not hold but knows a registry for (a source, see
// RecordSource) gives a layer that is fetched from there when read; its
// desc.Size must then be given.
func (s *Store) Layer(desc v1.Descriptor, diffID v1.Hash) (v1.Layer, error) {
	if err := checkHash(desc.Digest); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	fi, err := os.Stat(s.BlobPath(desc.Digest))
	if err != nil || !fi.Mode().IsRegular() {
		if desc.Size > 0 && len(s.Sources(desc.Digest)) > 0 {
			return newBlobLayer(s, desc, diffID), nil
		}
		return nil, fmt.Errorf("layer %s not in store %s", desc.Digest, s.root)
	}
	switch {
	case desc.Size == 0:
		desc.Size = fi.Size()
	case desc.Size != fi.Size():
		return nil, fmt.Errorf("layer %s: descriptor says %d bytes, the stored blob has %d", desc.Digest, desc.Size, fi.Size())
	}
	return newBlobLayer(s, desc, diffID), nil
}

// blobLayer is a lazy layer whose bytes come from a blobSource.
type blobLayer struct {
	src    blobSource
	desc   v1.Descriptor
	diffID v1.Hash
}

func newBlobLayer(src blobSource, desc v1.Descriptor, diffID v1.Hash) *blobLayer {
	return &blobLayer{src: src, desc: *desc.DeepCopy(), diffID: diffID}
}

// Digest implements v1.Layer.
func (l *blobLayer) Digest() (v1.Hash, error) { return l.desc.Digest, nil }

// DiffID implements v1.Layer.
func (l *blobLayer) DiffID() (v1.Hash, error) {
	if l.diffID == (v1.Hash{}) {
		return v1.Hash{}, fmt.Errorf("layer %s: diff ID unknown (no matching rootfs.diff_ids entry in the config)", l.desc.Digest)
	}
	return l.diffID, nil
}

// Size implements v1.Layer.
func (l *blobLayer) Size() (int64, error) { return l.desc.Size, nil }

// MediaType implements v1.Layer.
func (l *blobLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }

// Descriptor lets partial.Descriptor (and so mutate and remote) keep the
// layer's annotations and URLs.
func (l *blobLayer) Descriptor() (*v1.Descriptor, error) { return l.desc.DeepCopy(), nil }

// Compressed implements v1.Layer: the blob as stored.
func (l *blobLayer) Compressed() (io.ReadCloser, error) { return l.src.openBlob(l.desc.Digest) }

// Uncompressed implements v1.Layer: the blob decompressed by media type.
func (l *blobLayer) Uncompressed() (io.ReadCloser, error) {
	rc, err := l.src.openBlob(l.desc.Digest)
	if err != nil {
		return nil, err
	}
	u, err := decompress(rc, l.desc.MediaType)
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("layer %s: %w", l.desc.Digest, err)
	}
	return u, nil
}

// Decompress wraps a compressed layer stream rc of media type mt in the
// store's decompressor (klauspost's gzip and zstd, which decode gzip about
// a third faster than the standard library's that go-containerregistry's
// layers use). Closing the result closes rc.
func Decompress(rc io.ReadCloser, mt types.MediaType) (io.ReadCloser, error) {
	u, err := decompress(rc, mt)
	if err != nil {
		rc.Close()
		return nil, err
	}
	return u, nil
}

// decompress wraps rc in pkg/archive's decompressor for the compression
// the media type names (or, for media types that do not say, the one its
// magic number shows). Closing the result closes rc.
func decompress(rc io.ReadCloser, mt types.MediaType) (io.ReadCloser, error) {
	var (
		u   io.ReadCloser
		err error
	)
	if c, ok := archive.CompressionOf(mt); ok {
		u, err = archive.NewReader(rc, c)
	} else {
		u, _, err = archive.Decompress(rc)
	}
	if err != nil {
		return nil, err
	}
	return &readCloser{Reader: u, close: func() error { u.Close(); return rc.Close() }}, nil
}

// readCloser pairs a reader with a close function.
type readCloser struct {
	io.Reader
	close func() error
}

func (r *readCloser) Close() error { return r.close() }
