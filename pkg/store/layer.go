package store

import (
	"fmt"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/kiln-build/kiln/pkg/oci"
)

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
			return oci.NewBlobLayer(s.blobs(), desc, diffID), nil
		}
		return nil, fmt.Errorf("layer %s not in store %s", desc.Digest, s.root)
	}
	switch {
	case desc.Size == 0:
		desc.Size = fi.Size()
	case desc.Size != fi.Size():
		return nil, fmt.Errorf("layer %s: descriptor says %d bytes, the stored blob has %d", desc.Digest, desc.Size, fi.Size())
	}
	return oci.NewBlobLayer(s.blobs(), desc, diffID), nil
}
