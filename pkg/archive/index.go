package archive

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// maxIndexSize bounds a decoded index (a layer of a million entries
// encodes to about 100 MB).
const maxIndexSize = 512 << 20

// LayerIndex is the path index of one layer: every tar header of the
// layer, in stream order, without content. It answers what a layer holds
// (paths, types, modes, owners, link targets, whiteouts) without reading
// the layer again, and a Tree built from indexes (ApplyIndex) reads files
// out of the layers exactly as one built from the layers does.
type LayerIndex struct {
	// DiffID is the digest of the uncompressed layer the index describes.
	DiffID v1.Hash
	// Entries are the layer's headers, one per tar entry, in order.
	Entries []IndexEntry
}

// IndexEntry is one tar header of a layer.
type IndexEntry struct {
	Name     string            `json:"n"`
	Type     byte              `json:"t"`
	Mode     int64             `json:"m,omitempty"`
	UID      int               `json:"u,omitempty"`
	GID      int               `json:"g,omitempty"`
	Size     int64             `json:"s,omitempty"`
	Link     string            `json:"l,omitempty"`
	MTime    int64             `json:"tm,omitempty"` // Unix nanoseconds
	Devmajor int64             `json:"dj,omitempty"`
	Devminor int64             `json:"dn,omitempty"`
	Xattrs   map[string]string `json:"x,omitempty"` // PAX records of extended attributes
}

// indexFile is the encoded form of format 1 (JSON), still read.
type indexFile struct {
	Version int          `json:"v"`
	DiffID  string       `json:"diffID"`
	Entries []IndexEntry `json:"entries"`
}

// EntryOf is the index entry of a tar header.
func EntryOf(h *tar.Header) IndexEntry { return entryOf(h) }

func entryOf(h *tar.Header) IndexEntry {
	e := IndexEntry{
		Name: h.Name, Type: h.Typeflag, Mode: h.Mode, UID: h.Uid, GID: h.Gid,
		Size: h.Size, Link: h.Linkname, Devmajor: h.Devmajor, Devminor: h.Devminor,
	}
	if !h.ModTime.IsZero() {
		e.MTime = h.ModTime.UnixNano()
	}
	for k, v := range h.PAXRecords {
		if strings.HasPrefix(k, paxXattrPrefix) || strings.HasPrefix(k, "LIBARCHIVE.xattr.") {
			if e.Xattrs == nil {
				e.Xattrs = map[string]string{}
			}
			e.Xattrs[k] = v
		}
	}
	return e
}

const paxXattrPrefix = "SCHILY.xattr."

// Header returns the entry as a tar header.
func (e *IndexEntry) Header() *tar.Header {
	h := &tar.Header{
		Name: e.Name, Typeflag: e.Type, Mode: e.Mode, Uid: e.UID, Gid: e.GID,
		Size: e.Size, Linkname: e.Link, Devmajor: e.Devmajor, Devminor: e.Devminor,
	}
	if e.MTime != 0 {
		h.ModTime = time.Unix(0, e.MTime).UTC()
	}
	if len(e.Xattrs) > 0 {
		h.PAXRecords = make(map[string]string, len(e.Xattrs))
		for k, v := range e.Xattrs {
			h.PAXRecords[k] = v
		}
	}
	return h
}

// IndexLayer reads the uncompressed layer tar r to its end and returns its
// index. The stream must be the layer diffID names: its sha256 is checked
// (bytes after the tar trailer included), so an index is never made from
// a corrupt or substituted layer.
func IndexLayer(r io.Reader, diffID v1.Hash) (*LayerIndex, error) {
	h := sha256.New()
	x, err := IndexVerifiedTar(io.TeeReader(r, h), diffID)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(h, r); err != nil {
		return nil, fmt.Errorf("indexing layer %s: %w", diffID, err)
	}
	if diffID.Algorithm == "sha256" {
		if got := hex.EncodeToString(h.Sum(nil)); got != diffID.Hex {
			return nil, fmt.Errorf("indexing layer %s: its content is sha256:%s", diffID, got)
		}
	} else {
		return nil, fmt.Errorf("indexing layer %s: unsupported digest algorithm", diffID)
	}
	return x, nil
}

// IndexVerifiedTar reads the uncompressed layer tar r up to its trailer
// and returns its index, without hashing it: for a reader that verifies
// the layer itself (the store's OpenVerifiedLayer, whose Close reports a
// digest or diff ID mismatch), so that the bytes are hashed once. The
// index is only good when that verification passes.
func IndexVerifiedTar(r io.Reader, diffID v1.Hash) (*LayerIndex, error) {
	tr := tar.NewReader(r)
	x := &LayerIndex{DiffID: diffID}
	for {
		hdr, err := nextHeader(tr)
		if err == io.EOF {
			return x, nil
		}
		if err != nil {
			return nil, fmt.Errorf("indexing layer %s: read tar: %w", diffID, err)
		}
		x.Entries = append(x.Entries, entryOf(hdr))
	}
}

// Indexer indexes a layer tar that is written to it while something else
// reads it (a tee): Write never fails, and Finish returns the index,
// encoded (Encode's format), once the whole tar went through, or an error
// when it did not (the reader stopped early, a broken tar). The entries
// are encoded as they are read, never held: the index of a layer of
// 100,000 files is tens of megabytes in memory, a few once encoded. It
// does not hash the layer: the reader checks the diff ID (the bytes are
// hashed once), and the index is good only when that check passed.
type Indexer struct {
	pw   *io.PipeWriter
	done chan struct{}
	data []byte
	err  error
	dead bool
}

// NewIndexer starts indexing the layer diffID.
func NewIndexer(diffID v1.Hash) *Indexer {
	pr, pw := io.Pipe()
	ix := &Indexer{pw: pw, done: make(chan struct{})}
	go func() {
		defer close(ix.done)
		ix.data, ix.err = encodeTarIndex(pr, diffID)
		if ix.err == nil {
			// The rest (the tar's padding) must arrive too: a stream cut
			// after the trailer is not the whole layer.
			if _, err := io.Copy(io.Discard, pr); err != nil {
				ix.data, ix.err = nil, fmt.Errorf("indexing layer %s: %w", diffID, err)
			}
		}
		pr.CloseWithError(errIndexDone) // unblock a writer after a failure
	}()
	return ix
}

// encodeTarIndex reads the tar r up to its trailer and encodes its index
// entry by entry, as Encode encodes a LayerIndex.
func encodeTarIndex(r io.Reader, diffID v1.Hash) ([]byte, error) {
	var buf bytes.Buffer
	w, err := newIndexWriter(&buf, diffID)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(r)
	for {
		hdr, err := nextHeader(tr)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("indexing layer %s: read tar: %w", diffID, err)
		}
		e := entryOf(hdr)
		w.add(&e)
	}
	if err := w.finish(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

var errIndexDone = errors.New("indexer finished")

// Write feeds the indexer; it always reports success so that a tee never
// fails the reader it copies.
func (ix *Indexer) Write(p []byte) (int, error) {
	if !ix.dead {
		if _, err := ix.pw.Write(p); err != nil {
			ix.dead = true
		}
	}
	return len(p), nil
}

// Finish ends the stream and returns the encoded index.
func (ix *Indexer) Finish() ([]byte, error) {
	ix.pw.Close()
	<-ix.done
	return ix.data, ix.err
}

// Abort ends the stream without an index.
func (ix *Indexer) Abort() {
	ix.pw.CloseWithError(errors.New("aborted"))
	<-ix.done
}

// Encode returns the index encoded (format 2, see indexfmt.go).
func (x *LayerIndex) Encode() ([]byte, error) {
	var buf bytes.Buffer
	w, err := newIndexWriter(&buf, x.DiffID)
	if err != nil {
		return nil, err
	}
	for i := range x.Entries {
		w.add(&x.Entries[i])
	}
	if err := w.finish(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// DecodeIndex parses an encoded index (either format), which must
// describe diffID.
func DecodeIndex(data []byte, diffID v1.Hash) (*LayerIndex, error) {
	d, entries, err := decodeAnyIndex(data)
	if err != nil {
		return nil, fmt.Errorf("layer index of %s: %w", diffID, err)
	}
	if d != diffID.String() {
		return nil, fmt.Errorf("layer index of %s describes %s", diffID, d)
	}
	return &LayerIndex{DiffID: diffID, Entries: entries}, nil
}

// ApplyIndex applies one more layer, given by its index, on top of the
// tree as layer number layer, exactly as Apply would apply the layer's
// tar: the tree can then read files from the layer with ReadFiles.
func (t *Tree) ApplyIndex(layer int, x *LayerIndex) error {
	t.gen++
	for idx := range x.Entries {
		if err := t.applyEntry(layer, idx, x.Entries[idx].Header()); err != nil {
			return fmt.Errorf("layer %d: %w", layer, err)
		}
	}
	return nil
}
