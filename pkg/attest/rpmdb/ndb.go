package rpmdb

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// rpm's ndb database (Packages.db, rpm 4.16+; openSUSE and SLE): a
// 32-byte header, slot pages of 16-byte slots (the header takes the
// first two), and blobs in 16-byte blocks, each a blob header and a
// header blob. All little-endian.
const (
	ndbMagic      = 'R' | 'p'<<8 | 'm'<<16 | 'P'<<24
	ndbSlotMagic  = 'S' | 'l'<<8 | 'o'<<16 | 't'<<24
	ndbBlobMagic  = 'B' | 'l'<<8 | 'b'<<16 | 'S'<<24
	ndbPage       = 4096
	ndbBlock      = 16
	ndbMaxPages   = 2048
	ndbSlotsFirst = 2 // slots the header takes
)

// NDBPackages reads rpm's ndb Packages.db, each header parsed.
func NDBPackages(db []byte) ([]*Package, error) {
	le := binary.LittleEndian
	if len(db) < 32 || le.Uint32(db) != ndbMagic || le.Uint32(db[4:]) != 0 {
		return nil, errors.New("not an rpm ndb database")
	}
	pages := le.Uint32(db[12:])
	if pages == 0 || pages > ndbMaxPages || uint64(pages)*ndbPage > uint64(len(db)) {
		return nil, fmt.Errorf("ndb database with %d slot pages in %d bytes", pages, len(db))
	}
	var recs []record
	for i := uint64(ndbSlotsFirst); i < uint64(pages)*ndbPage/16; i++ {
		s := db[i*16 : i*16+16]
		if le.Uint32(s) != ndbSlotMagic {
			return nil, fmt.Errorf("ndb slot %d: bad magic", i)
		}
		pkg, off := le.Uint32(s[4:]), uint64(le.Uint32(s[8:]))*ndbBlock
		if pkg == 0 {
			continue // a free slot
		}
		if off+16 > uint64(len(db)) {
			return nil, fmt.Errorf("ndb package %d: blob at %d past the end", pkg, off)
		}
		h := db[off : off+16]
		n := uint64(le.Uint32(h[12:]))
		if le.Uint32(h) != ndbBlobMagic || le.Uint32(h[4:]) != pkg || off+16+n > uint64(len(db)) {
			return nil, fmt.Errorf("ndb package %d: bad blob at %d", pkg, off)
		}
		recs = append(recs, record{key: uint64(pkg), blob: db[off+16 : off+16+n]})
	}
	return parseAll(recs)
}
