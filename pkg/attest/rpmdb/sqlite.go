package rpmdb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// record is one stored header blob and its key (SQLite rowid, Berkeley DB
// key).
type record struct {
	key  uint64
	blob []byte
}

func parseAll(recs []record) ([]*Package, error) {
	var out []*Package
	for _, r := range recs {
		p, err := ParseHeader(r.blob)
		if err != nil {
			return nil, fmt.Errorf("package %d: %w", r.key, err)
		}
		if p.Name == "gpg-pubkey" {
			continue // an imported signing key, not software
		}
		out = append(out, p)
	}
	return out, nil
}

// sqliteMagic starts every SQLite 3 database file.
var sqliteMagic = []byte("SQLite format 3\x00")

// sqliteDB is a read-only view of a SQLite database file and the
// committed frames of its write-ahead log.
type sqliteDB struct {
	data     []byte
	pageSize int
	usable   int
	wal      map[uint32][]byte // page number -> newest committed frame
	pages    uint32            // pages in the database (with the log's)
}

// SQLitePackages reads rpm's SQLite database: the header blobs of its
// Packages table (rpmdb.sqlite; wal is rpmdb.sqlite-wal's content, or
// nil), each parsed.
func SQLitePackages(db, wal []byte) ([]*Package, error) {
	d, err := openSQLite(db, wal)
	if err != nil {
		return nil, err
	}
	root, err := d.tableRoot("Packages")
	if err != nil {
		return nil, err
	}
	var recs []record
	err = d.walk(root, 0, map[uint32]bool{}, func(rowid uint64, payload []byte) error {
		cols, err := columns(payload, 2)
		if err != nil {
			return fmt.Errorf("row %d of the Packages table: %w", rowid, err)
		}
		recs = append(recs, record{key: rowid, blob: cols[1]})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return parseAll(recs)
}

func openSQLite(db, wal []byte) (*sqliteDB, error) {
	if len(db) < 100 || !bytes.Equal(db[:16], sqliteMagic) {
		return nil, errors.New("not a SQLite 3 database")
	}
	ps := int(binary.BigEndian.Uint16(db[16:]))
	if ps == 1 {
		ps = 65536
	}
	if ps < 512 || ps&(ps-1) != 0 {
		return nil, fmt.Errorf("SQLite page size %d", ps)
	}
	d := &sqliteDB{data: db, pageSize: ps, usable: ps - int(db[20]), pages: uint32(len(db) / ps)}
	if d.usable < 480 {
		return nil, fmt.Errorf("SQLite usable page size %d", d.usable)
	}
	if len(wal) > 0 {
		if err := d.readWAL(wal); err != nil {
			return nil, fmt.Errorf("write-ahead log: %w", err)
		}
	}
	return d, nil
}

// readWAL keeps the newest frame of each page among the log's committed
// transactions (frames whose salts match the log's header and whose
// checksums chain; the frames after the last commit are not committed).
func (d *sqliteDB) readWAL(wal []byte) error {
	if len(wal) < 32 {
		return nil
	}
	magic := binary.BigEndian.Uint32(wal)
	if magic != 0x377f0682 && magic != 0x377f0683 {
		return errors.New("bad magic")
	}
	var order binary.ByteOrder = binary.LittleEndian
	if magic&1 == 1 {
		order = binary.BigEndian
	}
	if int(binary.BigEndian.Uint32(wal[8:])) != d.pageSize {
		return errors.New("page size differs from the database's")
	}
	s0, s1 := walChecksum(order, wal[:24], 0, 0)
	if s0 != binary.BigEndian.Uint32(wal[24:]) || s1 != binary.BigEndian.Uint32(wal[28:]) {
		return nil // a log never written to since it was reset
	}
	salt := wal[16:24]
	pending := map[uint32][]byte{}
	committed := map[uint32][]byte{}
	var pages uint32
	for off := 32; off+24+d.pageSize <= len(wal); off += 24 + d.pageSize {
		fh := wal[off : off+24]
		if !bytes.Equal(fh[8:16], salt) {
			break
		}
		s0, s1 = walChecksum(order, fh[:8], s0, s1)
		s0, s1 = walChecksum(order, wal[off+24:off+24+d.pageSize], s0, s1)
		if s0 != binary.BigEndian.Uint32(fh[16:]) || s1 != binary.BigEndian.Uint32(fh[20:]) {
			break
		}
		pending[binary.BigEndian.Uint32(fh)] = wal[off+24 : off+24+d.pageSize]
		if n := binary.BigEndian.Uint32(fh[4:]); n != 0 {
			for k, v := range pending {
				committed[k] = v
			}
			pending, pages = map[uint32][]byte{}, n
		}
	}
	if len(committed) > 0 {
		d.wal, d.pages = committed, pages
	}
	return nil
}

// walChecksum continues SQLite's log checksum over b (8-byte steps).
func walChecksum(order binary.ByteOrder, b []byte, s0, s1 uint32) (uint32, uint32) {
	for i := 0; i+8 <= len(b); i += 8 {
		s0 += order.Uint32(b[i:]) + s1
		s1 += order.Uint32(b[i+4:]) + s0
	}
	return s0, s1
}

func (d *sqliteDB) page(n uint32) ([]byte, error) {
	if n == 0 || n > d.pages {
		return nil, fmt.Errorf("page %d of %d", n, d.pages)
	}
	if p, ok := d.wal[n]; ok {
		return p, nil
	}
	off := int64(n-1) * int64(d.pageSize)
	if off+int64(d.pageSize) > int64(len(d.data)) {
		return nil, fmt.Errorf("page %d past the end of the file", n)
	}
	return d.data[off : off+int64(d.pageSize)], nil
}

// tableRoot finds a table's root page in sqlite_schema (page 1).
func (d *sqliteDB) tableRoot(name string) (uint32, error) {
	var root uint32
	err := d.walk(1, 0, map[uint32]bool{}, func(_ uint64, payload []byte) error {
		cols, err := columns(payload, 4)
		if err != nil {
			return fmt.Errorf("schema: %w", err)
		}
		if string(cols[0]) == "table" && strings.EqualFold(string(cols[1]), name) && len(cols[3]) > 0 {
			root = uint32(bigInt(cols[3]))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if root == 0 {
		return 0, fmt.Errorf("no %s table", name)
	}
	return root, nil
}

// maxDepth bounds a b-tree's depth.
const maxDepth = 32

// walk visits the rows of the table b-tree rooted at page n in rowid
// order.
func (d *sqliteDB) walk(n uint32, depth int, seen map[uint32]bool, row func(rowid uint64, payload []byte) error) error {
	if depth > maxDepth || seen[n] {
		return fmt.Errorf("b-tree page %d: a loop or a tree deeper than %d", n, maxDepth)
	}
	seen[n] = true
	p, err := d.page(n)
	if err != nil {
		return err
	}
	hdr := 0
	if n == 1 {
		hdr = 100
	}
	if len(p) < hdr+12 {
		return fmt.Errorf("page %d: short", n)
	}
	typ, cells := p[hdr], int(binary.BigEndian.Uint16(p[hdr+3:]))
	ptrs := hdr + 8
	if typ == 0x05 {
		ptrs = hdr + 12
	} else if typ != 0x0d {
		return fmt.Errorf("page %d: type %#x is not a table b-tree page", n, typ)
	}
	if ptrs+2*cells > len(p) {
		return fmt.Errorf("page %d: %d cells do not fit", n, cells)
	}
	for i := 0; i < cells; i++ {
		off := int(binary.BigEndian.Uint16(p[ptrs+2*i:]))
		if off >= d.usable {
			return fmt.Errorf("page %d: cell %d at %d", n, i, off)
		}
		if typ == 0x05 {
			if off+4 > len(p) {
				return fmt.Errorf("page %d: cell %d short", n, i)
			}
			if err := d.walk(binary.BigEndian.Uint32(p[off:]), depth+1, seen, row); err != nil {
				return err
			}
			continue
		}
		rowid, payload, err := d.leafCell(p, off)
		if err != nil {
			return fmt.Errorf("page %d cell %d: %w", n, i, err)
		}
		if err := row(rowid, payload); err != nil {
			return err
		}
	}
	if typ == 0x05 {
		return d.walk(binary.BigEndian.Uint32(p[hdr+8:]), depth+1, seen, row)
	}
	return nil
}

// leafCell reads a table leaf cell: its rowid and whole payload (with its
// overflow pages).
func (d *sqliteDB) leafCell(p []byte, off int) (uint64, []byte, error) {
	size, n := varint(p[off:])
	if n == 0 {
		return 0, nil, errors.New("bad payload size")
	}
	off += n
	rowid, n := varint(p[off:])
	if n == 0 {
		return 0, nil, errors.New("bad rowid")
	}
	off += n
	if size > maxData {
		return 0, nil, fmt.Errorf("payload of %d bytes", size)
	}
	u := uint64(d.usable)
	x, m := u-35, ((u-12)*32/255)-23
	local := size
	if size > x {
		local = m + (size-m)%(u-4)
		if local > x {
			local = m
		}
	}
	if uint64(off)+local > uint64(len(p)) {
		return 0, nil, errors.New("payload past the page")
	}
	payload := append(make([]byte, 0, size), p[off:off+int(local)]...)
	if local == size {
		return rowid, payload, nil
	}
	if off+int(local)+4 > len(p) {
		return 0, nil, errors.New("no overflow page number")
	}
	next := binary.BigEndian.Uint32(p[off+int(local):])
	for hops := uint32(0); uint64(len(payload)) < size; hops++ {
		if hops > d.pages {
			return 0, nil, errors.New("overflow chain loops")
		}
		op, err := d.page(next)
		if err != nil {
			return 0, nil, fmt.Errorf("overflow: %w", err)
		}
		chunk := op[4:d.usable]
		if rest := size - uint64(len(payload)); uint64(len(chunk)) > rest {
			chunk = chunk[:rest]
		}
		payload = append(payload, chunk...)
		next = binary.BigEndian.Uint32(op)
	}
	return rowid, payload, nil
}

// varint reads SQLite's variable-length integer; n is 0 when b is short.
func varint(b []byte) (v uint64, n int) {
	for i := 0; i < 9; i++ {
		if i >= len(b) {
			return 0, 0
		}
		if i == 8 {
			return v<<8 | uint64(b[i]), 9
		}
		v = v<<7 | uint64(b[i]&0x7f)
		if b[i]&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, 0
}

// columns decodes a record's first n values (integers as big-endian
// bytes, NULL as nil).
func columns(rec []byte, n int) ([][]byte, error) {
	hsize, k := varint(rec)
	if k == 0 || hsize < uint64(k) || hsize > uint64(len(rec)) {
		return nil, errors.New("bad record header")
	}
	types := rec[k:hsize]
	body := rec[hsize:]
	out := make([][]byte, 0, n)
	for len(out) < n {
		if len(types) == 0 {
			out = append(out, nil) // a column added later: NULL
			continue
		}
		st, k := varint(types)
		if k == 0 {
			return nil, errors.New("bad serial type")
		}
		types = types[k:]
		var size uint64
		switch {
		case st == 0 || st == 8 || st == 9:
		case st >= 1 && st <= 4:
			size = st
		case st == 5:
			size = 6
		case st == 6 || st == 7:
			size = 8
		case st >= 12:
			size = (st - 12) / 2
		default:
			return nil, fmt.Errorf("serial type %d", st)
		}
		if size > uint64(len(body)) {
			return nil, errors.New("record value past its end")
		}
		v := body[:size]
		switch st {
		case 8:
			v = []byte{0}
		case 9:
			v = []byte{1}
		}
		out = append(out, v)
		body = body[size:]
	}
	return out, nil
}

// bigInt is a record integer's value.
func bigInt(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}
