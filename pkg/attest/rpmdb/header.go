package rpmdb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"path"
	"strconv"
)

// Package is what an rpm header says of an installed package.
type Package struct {
	Name, Version, Release, Arch string
	// Epoch is "" when the header has none.
	Epoch                      string
	Vendor, License, SourceRPM string
	// Files are the paths the package owns, absolute.
	Files []string
}

// EVR is [epoch:]version-release, as rpm -q prints it with %{EVR}.
func (p *Package) EVR() string {
	v := p.Version + "-" + p.Release
	if p.Epoch != "" {
		v = p.Epoch + ":" + v
	}
	return v
}

// rpm header tags and types.
const (
	tagName        = 1000
	tagVersion     = 1001
	tagRelease     = 1002
	tagEpoch       = 1003
	tagVendor      = 1011
	tagLicense     = 1014
	tagArch        = 1022
	tagOldFilename = 1027
	tagSourceRPM   = 1044
	tagDirIndexes  = 1116
	tagBasenames   = 1117
	tagDirNames    = 1118

	typeInt32       = 4
	typeString      = 6
	typeStringArray = 8
	typeI18NString  = 9
)

// maxHeader bounds a header blob's index and data.
const (
	maxTags = 0xffff
	maxData = 256 << 20
)

type entry struct {
	typ           uint32
	offset, count uint32
}

// header is a parsed header blob: its index by tag and its data store.
type header struct {
	tags map[int32]entry
	data []byte
}

// ParseHeader reads an rpm header blob as the database stores it (the
// index count, the data length, the index entries, the data).
func ParseHeader(blob []byte) (*Package, error) {
	h, err := parse(blob)
	if err != nil {
		return nil, err
	}
	p := &Package{}
	for _, f := range []struct {
		tag int32
		dst *string
	}{{tagName, &p.Name}, {tagVersion, &p.Version}, {tagRelease, &p.Release}, {tagArch, &p.Arch},
		{tagVendor, &p.Vendor}, {tagLicense, &p.License}, {tagSourceRPM, &p.SourceRPM}} {
		if *f.dst, err = h.str(f.tag); err != nil {
			return nil, err
		}
	}
	if p.Name == "" {
		return nil, errors.New("rpm header without a name")
	}
	if e, ok := h.tags[tagEpoch]; ok {
		ints, err := h.int32s(e)
		if err != nil {
			return nil, fmt.Errorf("epoch: %w", err)
		}
		if len(ints) > 0 {
			p.Epoch = strconv.FormatUint(uint64(ints[0]), 10)
		}
	}
	if p.Files, err = h.files(); err != nil {
		return nil, fmt.Errorf("%s: files: %w", p.Name, err)
	}
	return p, nil
}

func parse(blob []byte) (*header, error) {
	if len(blob) < 8 {
		return nil, errors.New("rpm header shorter than 8 bytes")
	}
	il, dl := binary.BigEndian.Uint32(blob), binary.BigEndian.Uint32(blob[4:])
	if il == 0 || il > maxTags || dl > maxData {
		return nil, fmt.Errorf("rpm header with %d tags and %d data bytes", il, dl)
	}
	start := 8 + uint64(il)*16
	if start+uint64(dl) > uint64(len(blob)) {
		return nil, fmt.Errorf("rpm header of %d bytes says %d tags and %d data bytes", len(blob), il, dl)
	}
	h := &header{tags: make(map[int32]entry, il), data: blob[start : start+uint64(dl)]}
	for i := uint64(0); i < uint64(il); i++ {
		e := blob[8+i*16:]
		tag := int32(binary.BigEndian.Uint32(e))
		h.tags[tag] = entry{typ: binary.BigEndian.Uint32(e[4:]), offset: binary.BigEndian.Uint32(e[8:]), count: binary.BigEndian.Uint32(e[12:])}
	}
	return h, nil
}

// strings reads count NUL-terminated strings at e's offset.
func (h *header) strings(e entry) ([]string, error) {
	if e.typ != typeString && e.typ != typeStringArray && e.typ != typeI18NString {
		return nil, fmt.Errorf("type %d is not a string", e.typ)
	}
	if uint64(e.offset) > uint64(len(h.data)) || e.count > uint32(len(h.data)) {
		return nil, errors.New("string outside the header's data")
	}
	rest := h.data[e.offset:]
	n := e.count
	if e.typ == typeString {
		n = 1
	}
	out := make([]string, 0, n)
	for i := uint32(0); i < n; i++ {
		j := bytes.IndexByte(rest, 0)
		if j < 0 {
			return nil, errors.New("unterminated string in the header's data")
		}
		out = append(out, string(rest[:j]))
		rest = rest[j+1:]
	}
	return out, nil
}

// str is the (first) string of tag, "" when absent.
func (h *header) str(tag int32) (string, error) {
	e, ok := h.tags[tag]
	if !ok {
		return "", nil
	}
	s, err := h.strings(e)
	if err != nil {
		return "", fmt.Errorf("tag %d: %w", tag, err)
	}
	if len(s) == 0 {
		return "", nil
	}
	return s[0], nil
}

func (h *header) int32s(e entry) ([]uint32, error) {
	if e.typ != typeInt32 {
		return nil, fmt.Errorf("type %d is not int32", e.typ)
	}
	end := uint64(e.offset) + uint64(e.count)*4
	if end > uint64(len(h.data)) {
		return nil, errors.New("int32 array outside the header's data")
	}
	out := make([]uint32, e.count)
	for i := range out {
		out[i] = binary.BigEndian.Uint32(h.data[uint64(e.offset)+uint64(i)*4:])
	}
	return out, nil
}

// files joins DIRNAMES[DIRINDEXES[i]] and BASENAMES[i] (or reads the old
// OLDFILENAMES).
func (h *header) files() ([]string, error) {
	if e, ok := h.tags[tagOldFilename]; ok {
		return h.strings(e)
	}
	be, ok := h.tags[tagBasenames]
	if !ok {
		return nil, nil
	}
	bases, err := h.strings(be)
	if err != nil {
		return nil, err
	}
	dirs, err := h.strings(h.tags[tagDirNames])
	if err != nil {
		return nil, fmt.Errorf("dirnames: %w", err)
	}
	idx, err := h.int32s(h.tags[tagDirIndexes])
	if err != nil {
		return nil, fmt.Errorf("dirindexes: %w", err)
	}
	if len(idx) != len(bases) {
		return nil, fmt.Errorf("%d basenames and %d dirindexes", len(bases), len(idx))
	}
	out := make([]string, len(bases))
	for i, b := range bases {
		if idx[i] >= uint32(len(dirs)) {
			return nil, fmt.Errorf("dirindex %d of %d dirnames", idx[i], len(dirs))
		}
		out[i] = path.Join(dirs[idx[i]], b)
	}
	return out, nil
}
