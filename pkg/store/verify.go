package store

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/oci"
)

// OpenVerifiedLayer opens layer l uncompressed for reading, checking what
// it reads against what the image says: the compressed bytes against the
// layer's digest and size (from the manifest), the uncompressed bytes
// against diffID (from the config). A layer the store holds is read from
// the store (its digest was verified when it was committed); any other is
// read through l.Compressed and kept in the store, committed only when its
// digest matched. A mismatch is an error from Read at the end of the
// stream; Close reads what the caller left unread, so a caller that stops
// early (a tar reader stops at the end-of-archive blocks) still gets it
// from Close. Nothing read from a layer that fails is ever committed.
// Decompression is bounded by archive.CheckExpansion.
func (s *Store) OpenVerifiedLayer(l v1.Layer, diffID v1.Hash) (io.ReadCloser, error) {
	digest, err := l.Digest()
	if err != nil {
		return nil, err
	}
	if err := checkHash(digest); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	if err := checkHash(diffID); err != nil {
		return nil, fmt.Errorf("layer %s: diff ID: %w", digest, err)
	}
	size, err := l.Size()
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", digest, err)
	}
	if size < 0 {
		return nil, fmt.Errorf("layer %s: negative size %d in the manifest", digest, size)
	}
	mt, err := l.MediaType()
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", digest, err)
	}
	v := &verifiedLayer{digest: digest, diffID: diffID, size: size, diffHash: sha256.New()}
	if rc, err := s.OpenBlob(digest); err == nil {
		v.body = rc
		v.counted = &countingReader{r: rc}
	} else {
		body, err := l.Compressed()
		if err != nil {
			return nil, err
		}
		w, err := s.NewBlobWriter()
		if err != nil {
			body.Close()
			return nil, err
		}
		v.body, v.w = body, w
		// One byte more than the manifest says, to see a longer blob.
		v.counted = &countingReader{r: io.TeeReader(io.LimitReader(body, size+1), w)}
	}
	dec, err := oci.Decompress(io.NopCloser(v.counted), mt)
	if err != nil {
		v.abort()
		v.body.Close()
		return nil, fmt.Errorf("layer %s: %w", digest, err)
	}
	v.dec = dec
	v.limited = archive.CheckExpansion(dec, v.counted.Count, "layer "+digest.String())
	return v, nil
}

// verifiedLayer is the reader OpenVerifiedLayer returns.
type verifiedLayer struct {
	digest, diffID v1.Hash
	size           int64
	body           io.ReadCloser   // the compressed stream
	counted        *countingReader // body as read (and teed into w)
	w              *BlobWriter     // nil when the store held the blob
	dec            io.ReadCloser   // decompressed counted
	limited        io.Reader       // dec within the expansion limit
	diffHash       hash.Hash
	err            error // sticky: verification failure
	eof            bool
	closed         bool
}

func (v *verifiedLayer) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.eof {
		return 0, io.EOF
	}
	n, err := v.limited.Read(p)
	v.diffHash.Write(p[:n])
	if errors.Is(err, io.EOF) {
		if verr := v.finish(); verr != nil {
			v.err = verr
			return n, verr
		}
		v.eof = true
		return n, io.EOF
	}
	if err != nil {
		v.err = fmt.Errorf("layer %s: %w", v.digest, err)
		return n, v.err
	}
	return n, nil
}

// finish checks the whole stream once the decompressed end was reached:
// the compressed rest (a trailer) is read too, then size, digest (by
// committing the blob) and diff ID are compared.
func (v *verifiedLayer) finish() error {
	if _, err := io.Copy(io.Discard, v.counted); err != nil {
		return fmt.Errorf("layer %s: %w", v.digest, err)
	}
	if got := v.counted.n; got != v.size {
		v.abort()
		return fmt.Errorf("layer %s: size mismatch: the manifest says %d bytes, the registry sent %s", v.digest, v.size, sizeDesc(got, v.size))
	}
	if v.w != nil {
		w := v.w
		v.w = nil
		if err := w.Commit(v.digest); err != nil {
			return fmt.Errorf("layer %s: content does not match its digest: %w", v.digest, err)
		}
	}
	got := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", v.diffHash.Sum(nil))}
	if got != v.diffID {
		return fmt.Errorf("layer %s: uncompressed content does not match the config's diff ID %s (got %s)", v.digest, v.diffID, got)
	}
	return nil
}

func sizeDesc(got, want int64) string {
	if got > want {
		return "more"
	}
	return fmt.Sprintf("%d", got)
}

// Close reads the rest of the layer (verifying it) unless reading already
// failed, and returns the verification error, if any.
func (v *verifiedLayer) Close() error {
	if v.closed {
		return v.err
	}
	v.closed = true
	if v.err == nil && !v.eof {
		_, _ = io.Copy(io.Discard, v)
	}
	v.abort()
	v.dec.Close()
	v.body.Close()
	return v.err
}

func (v *verifiedLayer) abort() {
	if v.w != nil {
		v.w.Abort()
		v.w = nil
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Count is how many bytes were read so far.
func (c *countingReader) Count() int64 { return c.n }
