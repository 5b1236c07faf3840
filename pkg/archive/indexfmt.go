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
//	0x00 (the end)
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
	zw   *gzip.Writer
	bw   *bufio.Writer
	prev string
	tmp  [binary.MaxVarintLen64]byte
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
	if err := w.bw.Flush(); err != nil {
		return err
	}
	return w.zw.Close()
}

// maxIndexEntries bounds the entries of a decoded index (a layer of a
// million files is big).
const maxIndexEntries = 1 << 23

// maxIndexString bounds one string of an encoded index (a name, a link
// target, an extended attribute).
const maxIndexString = 1 << 20

// indexReader decodes format 2.
type indexReader struct {
	r    *bufio.Reader
	read int64 // bytes decoded, against maxIndexSize
	err  error
}

func (r *indexReader) byte() byte {
	if r.err != nil {
		return 0
	}
	b, err := r.r.ReadByte()
	if err != nil {
		r.err = err
	}
	r.read++
	return b
}

func (r *indexReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(r.r)
	if err != nil {
		r.err = err
	}
	r.read += 2
	return v
}

func (r *indexReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, err := binary.ReadVarint(r.r)
	if err != nil {
		r.err = err
	}
	r.read += 2
	return v
}

// bytes reads a string's bytes into buf (grown as needed).
func (r *indexReader) bytes(buf []byte) []byte {
	n := r.uvarint()
	if r.err != nil {
		return buf[:0]
	}
	if n > maxIndexString {
		r.err = fmt.Errorf("a string of %d bytes", n)
		return buf[:0]
	}
	buf = slices.Grow(buf[:0], int(n))[:n]
	if _, err := io.ReadFull(r.r, buf); err != nil {
		r.err = err
	}
	r.read += int64(n)
	return buf
}

func (r *indexReader) str() string { return string(r.bytes(nil)) }

// decodeIndexV2 decodes the entries that follow the magic. Names and link
// targets are decoded into one buffer that becomes one string, and the
// entries into chunks copied once into a slice of the right size: ten
// thousand entries cost a few allocations, not tens of thousands.
func decodeIndexV2(br *bufio.Reader) (diffID string, entries []IndexEntry, err error) {
	r := &indexReader{r: br}
	diffID = r.str()
	type span struct{ name, link [2]int }
	var (
		name, buf, arena []byte
		spans            []span
		chunks           [][]IndexEntry
		n                int
	)
	cur := make([]IndexEntry, 0, 256)
	for r.err == nil {
		switch tag := r.byte(); {
		case r.err != nil:
		case tag == 0:
			out := make([]IndexEntry, 0, n+len(cur))
			for _, c := range chunks {
				out = append(out, c...)
			}
			out = append(out, cur...)
			all := string(arena)
			for i := range out {
				sp := spans[i]
				out[i].Name = all[sp.name[0]:sp.name[1]]
				out[i].Link = all[sp.link[0]:sp.link[1]]
			}
			return diffID, out, nil
		case tag != 1:
			r.err = fmt.Errorf("unknown record %#x", tag)
		default:
			var e IndexEntry
			var sp span
			shared := r.uvarint()
			if shared > uint64(len(name)) {
				r.err = errors.New("a name shares more than the previous one has")
				break
			}
			buf = r.bytes(buf)
			name = append(name[:shared], buf...)
			sp.name = [2]int{len(arena), len(arena) + len(name)}
			arena = append(arena, name...)
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
				buf = r.bytes(buf)
				sp.link = [2]int{len(arena), len(arena) + len(buf)}
				arena = append(arena, buf...)
			}
			if flags&fDev != 0 {
				e.Devmajor, e.Devminor = r.varint(), r.varint()
			}
			if flags&fXattrs != 0 {
				xn := r.uvarint()
				if xn > 1<<16 {
					r.err = fmt.Errorf("%d extended attributes", xn)
					break
				}
				e.Xattrs = make(map[string]string, xn)
				for i := uint64(0); i < xn && r.err == nil; i++ {
					k := r.str()
					e.Xattrs[k] = r.str()
				}
			}
			if r.read > maxIndexSize || n+len(cur) >= maxIndexEntries {
				r.err = fmt.Errorf("more than %d bytes or %d entries", maxIndexSize, maxIndexEntries)
			}
			if len(cur) == cap(cur) {
				chunks = append(chunks, cur)
				n += len(cur)
				cur = make([]IndexEntry, 0, 2*cap(cur))
			}
			cur = append(cur, e)
			spans = append(spans, sp)
		}
	}
	if errors.Is(r.err, io.EOF) {
		r.err = io.ErrUnexpectedEOF
	}
	return "", nil, r.err
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
		diffID, entries, err = decodeIndexV2(br)
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
