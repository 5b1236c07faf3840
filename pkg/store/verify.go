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
// digest, its size and its diff ID matched. Reading, decompressing and
// hashing run on three goroutines (ReadAhead, NewReaderAhead). A mismatch is an error from Read at the end of the
// stream; Close reads what the caller left unread, so a caller that stops
// early (a tar reader stops at the end-of-archive blocks) still gets it
// from Close; a caller that gives up instead calls the reader's Abort
// method. Nothing read from a layer that fails is ever committed.
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
	var src io.Reader
	if rc, err := s.OpenBlob(digest); err == nil {
		v.body, src = rc, rc
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
		// One byte more than the manifest says, to see a longer blob.
		v.fetch = &fetchReader{r: io.LimitReader(body, size+1), w: w, digest: digest, size: size}
		v.body, src = body, v.fetch
	}
	// Three goroutines: this one reads the compressed stream (and keeps
	// and hashes a fetched one), the decompressor's inflates, and the
	// caller's hashes (and indexes or extracts) what comes out.
	v.ahead = archive.ReadAhead(src, fetchChunkSize, fetchChunks)
	v.counted = archive.NewCountingReader(v.ahead)
	dec, err := oci.Decompress(io.NopCloser(v.counted), mt)
	if err != nil {
		v.stop()
		return nil, fmt.Errorf("layer %s: %w", digest, err)
	}
	v.dec = dec
	v.limited = archive.CheckExpansion(dec, v.counted.Count, "layer "+digest.String())
	return v, nil
}

// How far the reading of a layer's compressed stream may run ahead of its
// decompression (4 MiB: the fetched blob's fsync then mostly overlaps the
// decompression of the last of it).
const (
	fetchChunkSize = 256 << 10
	fetchChunks    = 16
)

// fetchReader reads a layer blob that is fetched into a BlobWriter: at its
// end it checks the size and the digest and syncs the blob (Verify), which
// finish then commits once the layer's diff ID matched too. It runs on the
// read-ahead goroutine; its verdict (verr) is read once that goroutine
// delivered io.EOF.
type fetchReader struct {
	r      io.Reader
	w      *BlobWriter
	digest v1.Hash
	size   int64
	n      int64
	verr   error
}

func (f *fetchReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	f.n += int64(n)
	if n > 0 {
		if _, werr := f.w.Write(p[:n]); werr != nil {
			f.w.Abort()
			return n, werr
		}
	}
	if errors.Is(err, io.EOF) {
		if f.n != f.size {
			f.w.Abort()
			f.verr = fmt.Errorf("layer %s: size mismatch: the manifest says %d bytes, the registry sent %s", f.digest, f.size, sizeDesc(f.n, f.size))
		} else if verr := f.w.Verify(f.digest); verr != nil {
			f.verr = fmt.Errorf("layer %s: content does not match its digest: %w", f.digest, verr)
		}
		return n, io.EOF
	}
	return n, err
}

// verifiedLayer is the reader OpenVerifiedLayer returns.
type verifiedLayer struct {
	digest, diffID v1.Hash
	size           int64
	body           io.ReadCloser           // the compressed stream
	fetch          *fetchReader            // body kept in the store; nil when it held the blob
	ahead          *archive.AheadReader    // body (or fetch) read ahead
	counted        *archive.CountingReader // ahead as the decompressor reads it
	dec            io.ReadCloser           // decompressed counted
	limited        io.Reader               // dec within the expansion limit
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
// the compressed rest (a trailer) is read too, then size, digest (the
// fetched blob was committed at its end) and diff ID are compared.
func (v *verifiedLayer) finish() error {
	if _, err := io.Copy(io.Discard, v.counted); err != nil {
		return fmt.Errorf("layer %s: %w", v.digest, err)
	}
	// The read-ahead delivered io.EOF: its goroutine is done with fetch.
	if got := v.counted.Count(); got != v.size {
		return fmt.Errorf("layer %s: size mismatch: the manifest says %d bytes, the registry sent %s", v.digest, v.size, sizeDesc(got, v.size))
	}
	if v.fetch != nil && v.fetch.verr != nil {
		return v.fetch.verr
	}
	got := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", v.diffHash.Sum(nil))}
	if got != v.diffID {
		return fmt.Errorf("layer %s: uncompressed content does not match the config's diff ID %s (got %s)", v.digest, v.diffID, got)
	}
	if v.fetch != nil {
		// Verified and synced by fetch already: this only renames it.
		if err := v.fetch.w.Commit(v.digest); err != nil {
			return fmt.Errorf("layer %s: keeping it in the store: %w", v.digest, err)
		}
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
// failed, and returns the verification error, if any. A fetched blob not
// read to its end is not kept.
func (v *verifiedLayer) Close() error {
	if v.closed {
		return v.err
	}
	v.closed = true
	if v.err == nil && !v.eof {
		_, _ = io.Copy(io.Discard, v)
	}
	v.stop()
	v.dec.Close()
	return v.err
}

// Abort ends reading without reading the rest: nothing is verified, kept
// or reported (Close then returns nil). For a reader that gives up (its
// build was cancelled), which would otherwise wait for Close to download
// and decompress the rest of the layer.
func (v *verifiedLayer) Abort() {
	if v.closed {
		return
	}
	v.closed = true
	v.stop()
	v.dec.Close()
}

// stop ends the read-ahead (closing the body makes a blocked read of it
// return) and drops a fetched blob that was not committed.
func (v *verifiedLayer) stop() {
	v.body.Close()
	v.ahead.Stop()
	if v.fetch != nil {
		v.fetch.w.Abort() // a no-op once committed
	}
}
