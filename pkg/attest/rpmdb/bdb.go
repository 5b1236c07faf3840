package rpmdb

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Berkeley DB's hash database: magic, page types, item types and sizes.
const (
	bdbHashMagic     = 0x061561
	bdbPageHeader    = 26
	bdbHashUnsorted  = 2
	bdbOverflow      = 7
	bdbHash          = 13
	bdbKeyData       = 1
	bdbOffPage       = 3
	bdbOffPageLength = 12
)

// BDBPackages reads rpm's Berkeley DB Packages database (a hash
// database: header number -> header blob), each header parsed.
func BDBPackages(db []byte) ([]*Package, error) {
	if len(db) < 512 {
		return nil, errors.New("not a Berkeley DB database: too short")
	}
	var order binary.ByteOrder = binary.LittleEndian
	if order.Uint32(db[12:]) != bdbHashMagic {
		order = binary.BigEndian
		if order.Uint32(db[12:]) != bdbHashMagic {
			return nil, errors.New("not a Berkeley DB hash database")
		}
	}
	ps := int(order.Uint32(db[20:]))
	if ps < 512 || ps > 65536 || ps&(ps-1) != 0 {
		return nil, fmt.Errorf("page size %d of the Berkeley DB database", ps)
	}
	if db[24] != 0 {
		return nil, errors.New("the Berkeley DB database is encrypted")
	}
	b := &bdb{data: db, ps: ps, order: order, pages: uint32(len(db) / ps)}
	var recs []record
	for n := uint32(1); n < b.pages; n++ {
		p := b.page(n)
		if t := p[25]; t != bdbHash && t != bdbHashUnsorted {
			continue
		}
		got, err := b.hashPage(n, p)
		if err != nil {
			return nil, err
		}
		recs = append(recs, got...)
	}
	return parseAll(recs)
}

type bdb struct {
	data  []byte
	ps    int
	order binary.ByteOrder
	pages uint32
}

func (b *bdb) page(n uint32) []byte {
	return b.data[int(n)*b.ps : int(n+1)*b.ps]
}

// hashPage reads the key/value pairs of a hash page: items alternate key
// and value; rpm's keys are header numbers, its values header blobs (off
// page when large). Values too short for a header (rpm's own counters)
// are left out.
func (b *bdb) hashPage(n uint32, p []byte) ([]record, error) {
	entries := int(b.order.Uint16(p[20:]))
	if bdbPageHeader+2*entries > b.ps {
		return nil, fmt.Errorf("hash page %d: %d entries do not fit", n, entries)
	}
	item := func(i int) ([]byte, error) {
		off := int(b.order.Uint16(p[bdbPageHeader+2*i:]))
		end := b.ps
		if i > 0 {
			end = int(b.order.Uint16(p[bdbPageHeader+2*(i-1):]))
		}
		if off < bdbPageHeader+2*entries || off >= end || end > b.ps {
			return nil, fmt.Errorf("hash page %d: item %d at %d..%d", n, i, off, end)
		}
		return p[off:end], nil
	}
	var out []record
	for i := 0; i+1 < entries; i += 2 {
		k, err := item(i)
		if err != nil {
			return nil, err
		}
		v, err := item(i + 1)
		if err != nil {
			return nil, err
		}
		var key uint64
		if k[0] == bdbKeyData && len(k) == 5 {
			key = uint64(b.order.Uint32(k[1:]))
		}
		var val []byte
		switch v[0] {
		case bdbKeyData:
			val = v[1:]
		case bdbOffPage:
			if len(v) < bdbOffPageLength {
				return nil, fmt.Errorf("hash page %d: short off-page item", n)
			}
			if val, err = b.overflow(b.order.Uint32(v[4:]), b.order.Uint32(v[8:])); err != nil {
				return nil, fmt.Errorf("hash page %d: %w", n, err)
			}
		default:
			return nil, fmt.Errorf("hash page %d: item type %d", n, v[0])
		}
		if len(val) >= 8 {
			out = append(out, record{key: key, blob: val})
		}
	}
	return out, nil
}

// overflow reads an off-page item of length bytes from its chain of
// overflow pages.
func (b *bdb) overflow(n, length uint32) ([]byte, error) {
	if length > maxData {
		return nil, fmt.Errorf("off-page item of %d bytes", length)
	}
	out := make([]byte, 0, length)
	for hops := uint32(0); n != 0 && uint32(len(out)) < length; hops++ {
		if n >= b.pages || hops > b.pages {
			return nil, fmt.Errorf("overflow page %d of %d", n, b.pages)
		}
		p := b.page(n)
		if p[25] != bdbOverflow {
			return nil, fmt.Errorf("page %d is not an overflow page", n)
		}
		used := int(b.order.Uint16(p[22:]))
		if bdbPageHeader+used > b.ps {
			return nil, fmt.Errorf("overflow page %d holds %d bytes", n, used)
		}
		out = append(out, p[bdbPageHeader:bdbPageHeader+used]...)
		n = b.order.Uint32(p[16:])
	}
	if uint32(len(out)) != length {
		return nil, fmt.Errorf("off-page item of %d bytes has %d", length, len(out))
	}
	return out, nil
}
