package archive

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
)

// The encoded index (format 2) is gzip-compressed binary, made to be
// decoded in a few milliseconds for a base of ten thousand files (JSON,
// format 1, took ten times as long; it is still read):
//
//	"kiln-index" 0x02, diffID (a string)
//	per entry: 0x01, then
//	  the length of the prefix its name shares with the previous name,
//	  the rest of the name (a string), the type (a byte), a byte of flags
//	  saying which of the fields follow (each but the name and type is
//	  left out when zero): mode, uid, gid, size, mtime (varints), link
//	  target (a string), device major and minor (varints), extended
//	  attributes (a count, then key and value strings, sorted by key)
//	0x00 (the end), then the number of entries and the bytes of all
//	their names and link targets, 8 bytes each, little-endian (so that
//	the decoder allocates each once)
//
// A string is its length (uvarint) and bytes; numbers are varints.
const indexMagic = "kiln-index\x02"

const (
	fMode = 1 << iota
	fUID
	fGID
	fSize
	fMTime
	fLink
	fDev
	fXattrs
)

// indexWriter encodes entries one at a time.
type indexWriter struct {
	zw      *gzip.Writer
	bw      *bufio.Writer
	prev    string
	tmp     [binary.MaxVarintLen64]byte
	n, text uint64 // entries, bytes of names and link targets
}

func newIndexWriter(w io.Writer, diffID v1.Hash) (*indexWriter, error) {
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	iw := &indexWriter{zw: zw, bw: bufio.NewWriterSize(zw, 64<<10)}
	iw.bw.WriteString(indexMagic)
	iw.str(diffID.String())
	return iw, nil
}

func (w *indexWriter) uvarint(v uint64) {
	n := binary.PutUvarint(w.tmp[:], v)
	w.bw.Write(w.tmp[:n])
}

func (w *indexWriter) varint(v int64) {
	n := binary.PutVarint(w.tmp[:], v)
	w.bw.Write(w.tmp[:n])
}

func (w *indexWriter) str(s string) {
	w.uvarint(uint64(len(s)))
	w.bw.WriteString(s)
}

// add encodes one entry.
func (w *indexWriter) add(e *IndexEntry) {
	shared := 0
	for shared < len(e.Name) && shared < len(w.prev) && e.Name[shared] == w.prev[shared] {
		shared++
	}
	w.n++
	w.text += uint64(len(e.Name) + len(e.Link))
	w.bw.WriteByte(1)
	w.uvarint(uint64(shared))
	w.str(e.Name[shared:])
	w.prev = e.Name
	w.bw.WriteByte(e.Type)
	var flags byte
	for _, f := range []struct {
		set  bool
		flag byte
	}{{e.Mode != 0, fMode}, {e.UID != 0, fUID}, {e.GID != 0, fGID}, {e.Size != 0, fSize}, {e.MTime != 0, fMTime},
		{e.Link != "", fLink}, {e.Devmajor != 0 || e.Devminor != 0, fDev}, {len(e.Xattrs) > 0, fXattrs}} {
		if f.set {
			flags |= f.flag
		}
	}
	w.bw.WriteByte(flags)
	if flags&fMode != 0 {
		w.varint(e.Mode)
	}
	if flags&fUID != 0 {
		w.varint(int64(e.UID))
	}
	if flags&fGID != 0 {
		w.varint(int64(e.GID))
	}
	if flags&fSize != 0 {
		w.varint(e.Size)
	}
	if flags&fMTime != 0 {
		w.varint(e.MTime)
	}
	if flags&fLink != 0 {
		w.str(e.Link)
	}
	if flags&fDev != 0 {
		w.varint(e.Devmajor)
		w.varint(e.Devminor)
	}
	if flags&fXattrs != 0 {
		keys := make([]string, 0, len(e.Xattrs))
		for k := range e.Xattrs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		w.uvarint(uint64(len(keys)))
		for _, k := range keys {
			w.str(k)
			w.str(e.Xattrs[k])
		}
	}
}

// finish ends the stream.
func (w *indexWriter) finish() error {
	w.bw.WriteByte(0)
	var tail [16]byte
	binary.LittleEndian.PutUint64(tail[:8], w.n)
	binary.LittleEndian.PutUint64(tail[8:], w.text)
	w.bw.Write(tail[:])
	if err := w.bw.Flush(); err != nil {
		return err
	}
	return w.zw.Close()
}

// maxIndexEntries bounds the entries of a decoded index (a layer of a
// million files is big).
const maxIndexEntries = 1 << 23

// indexReader decodes format 2 from its bytes.
type indexReader struct {
	b   []byte
	err error
}

func (r *indexReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

func (r *indexReader) byte() byte {
	if len(r.b) == 0 {
		r.fail(io.ErrUnexpectedEOF)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *indexReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(errors.New("bad number"))
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *indexReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(errors.New("bad number"))
		return 0
	}
	r.b = r.b[n:]
	return v
}

// bytes returns a string's bytes (in the decoded buffer).
func (r *indexReader) bytes() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail(io.ErrUnexpectedEOF)
		return nil
	}
	b := r.b[:n]
	r.b = r.b[n:]
	return b
}

func (r *indexReader) str() string { return string(r.bytes()) }

// decodeIndexV2 decodes raw, a decoded format 2 stream after the magic.
// The trailer gives the number of entries and the bytes of their names
// and link targets: the entries are one slice and the names and targets
// one string, allocated once; a count or size that does not match what
// the entries hold is an error.
func decodeIndexV2(raw []byte) (diffID string, entries []IndexEntry, err error) {
	if len(raw) < 17 || raw[len(raw)-17] != 0 {
		return "", nil, io.ErrUnexpectedEOF
	}
	count := binary.LittleEndian.Uint64(raw[len(raw)-16:])
	text := binary.LittleEndian.Uint64(raw[len(raw)-8:])
	if count > maxIndexEntries || count > uint64(len(raw))/5 || text > maxIndexSize {
		return "", nil, fmt.Errorf("a trailer of %d entries and %d bytes of names", count, text)
	}
	r := &indexReader{b: raw[:len(raw)-17]}
	diffID = r.str()
	type span struct{ name, link [2]int }
	entries = make([]IndexEntry, 0, count)
	spans := make([]span, 0, count)
	var all strings.Builder
	all.Grow(int(text))
	var name []byte
	for len(r.b) > 0 {
		if tag := r.byte(); tag != 1 {
			r.fail(fmt.Errorf("unknown record %#x", tag))
			break
		}
		if uint64(len(entries)) == count {
			r.fail(errors.New("more entries than the trailer says"))
			break
		}
		var e IndexEntry
		var sp span
		shared := r.uvarint()
		if shared > uint64(len(name)) {
			r.fail(errors.New("a name shares more than the previous one has"))
			break
		}
		name = append(name[:shared], r.bytes()...)
		sp.name = [2]int{all.Len(), all.Len() + len(name)}
		all.Write(name)
		e.Type = r.byte()
		flags := r.byte()
		if flags&fMode != 0 {
			e.Mode = r.varint()
		}
		if flags&fUID != 0 {
			e.UID = int(r.varint())
		}
		if flags&fGID != 0 {
			e.GID = int(r.varint())
		}
		if flags&fSize != 0 {
			e.Size = r.varint()
		}
		if flags&fMTime != 0 {
			e.MTime = r.varint()
		}
		if flags&fLink != 0 {
			l := r.bytes()
			sp.link = [2]int{all.Len(), all.Len() + len(l)}
			all.Write(l)
		}
		if flags&fDev != 0 {
			e.Devmajor, e.Devminor = r.varint(), r.varint()
		}
		if flags&fXattrs != 0 {
			xn := r.uvarint()
			if xn > uint64(len(r.b)) {
				r.fail(fmt.Errorf("%d extended attributes", xn))
				break
			}
			e.Xattrs = make(map[string]string, xn)
			for i := uint64(0); i < xn && r.err == nil; i++ {
				k := r.str()
				e.Xattrs[k] = r.str()
			}
		}
		if uint64(all.Len()) > text {
			r.fail(errors.New("more names than the trailer says"))
		}
		entries = append(entries, e)
		spans = append(spans, sp)
	}
	if r.err == nil && (uint64(len(entries)) != count || uint64(all.Len()) != text) {
		r.fail(errors.New("fewer entries than the trailer says"))
	}
	if r.err != nil {
		return "", nil, r.err
	}
	str := all.String()
	for i := range entries {
		sp := spans[i]
		entries[i].Name = str[sp.name[0]:sp.name[1]]
		entries[i].Link = str[sp.link[0]:sp.link[1]]
	}
	return diffID, entries, nil
}

// decodeAnyIndex decodes an encoded index of either format.
func decodeAnyIndex(data []byte) (diffID string, entries []IndexEntry, err error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return "", nil, err
	}
	defer zr.Close()
	br := bufio.NewReaderSize(zr, 64<<10)
	head, err := br.Peek(len(indexMagic))
	if err == nil && string(head) == indexMagic {
		br.Discard(len(indexMagic))
		// The gzip trailer says how much comes (modulo 4 GiB): one
		// buffer, read at once.
		var buf bytes.Buffer
		if len(data) >= 4 {
			if n := binary.LittleEndian.Uint32(data[len(data)-4:]); n <= maxIndexSize {
				buf.Grow(int(n))
			}
		}
		if _, err := buf.ReadFrom(io.LimitReader(br, maxIndexSize+1)); err != nil {
			return "", nil, fmt.Errorf("malformed: %w", err)
		}
		if buf.Len() > maxIndexSize {
			return "", nil, fmt.Errorf("malformed: more than %d bytes", maxIndexSize)
		}
		diffID, entries, err = decodeIndexV2(buf.Bytes())
		if err != nil {
			return "", nil, fmt.Errorf("malformed: %w", err)
		}
		return diffID, entries, nil
	}
	if len(head) > 0 && strings.HasPrefix(string(head), "{") {
		var f indexFile
		if err := json.NewDecoder(io.LimitReader(br, maxIndexSize)).Decode(&f); err != nil {
			return "", nil, fmt.Errorf("malformed: %w", err)
		}
		if f.Version != 1 {
			return "", nil, fmt.Errorf("version %d, want 1 or 2", f.Version)
		}
		return f.DiffID, f.Entries, nil
	}
	return "", nil, errors.New("malformed: not a layer index")
}
