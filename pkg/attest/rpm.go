package attest

import (
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/kiln-build/kiln/pkg/attest/rpmdb"
)

// rpmDirs are where rpm keeps its database (Fedora 36+ moved it to
// /usr/lib/sysimage/rpm, leaving /var/lib/rpm a symlink).
var rpmDirs = []string{"var/lib/rpm", "usr/lib/sysimage/rpm"}

// rpmFiles are the database files of one rpm directory, kept until the
// scan has seen them all (the write-ahead log may come first).
type rpmFiles struct {
	sqlite, wal, bdb, ndb []byte
}

// isRPMDB reports whether p is a file of an rpm database.
func isRPMDB(p string) bool {
	dir, base := path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	for _, d := range rpmDirs {
		if dir == d {
			switch base {
			case "rpmdb.sqlite", "rpmdb.sqlite-wal", "Packages", "Packages.db":
				return true
			}
		}
	}
	return false
}

// rpmFile keeps one database file.
func (s *scan) rpmFile(p string, size int64, r io.Reader) error {
	if s.rpm == nil {
		s.rpm = map[string]*rpmFiles{}
	}
	dir, base := path.Split(p)
	f := s.rpm[dir]
	if f == nil {
		f = &rpmFiles{}
		s.rpm[dir] = f
	}
	if size > scanLimit {
		return fmt.Errorf("%d bytes is more than the %d read", size, scanLimit)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	switch base {
	case "rpmdb.sqlite":
		f.sqlite = b
	case "rpmdb.sqlite-wal":
		f.wal = b
	case "Packages":
		f.bdb = b
	case "Packages.db":
		f.ndb = b
	}
	return nil
}

// rpmPackages reads the rpm databases the scan kept: SQLite where there
// is one (rpm 4.16+ leaves an old Packages behind when it converts),
// else Berkeley DB, else ndb.
func (s *scan) rpmPackages() {
	for dir, f := range s.rpm {
		var pkgs []*rpmdb.Package
		var err error
		src := dir + "rpmdb.sqlite"
		switch {
		case f.sqlite != nil:
			pkgs, err = rpmdb.SQLitePackages(f.sqlite, f.wal)
		case f.bdb != nil:
			src = dir + "Packages"
			pkgs, err = rpmdb.BDBPackages(f.bdb)
		case f.ndb != nil:
			src = dir + "Packages.db"
			pkgs, err = rpmdb.NDBPackages(f.ndb)
		default:
			continue
		}
		if err != nil {
			s.errs = append(s.errs, fmt.Sprintf("/%s: %v", src, err))
			continue
		}
		for _, p := range pkgs {
			fd := found{kind: "rpm", name: p.Name, version: p.EVR(), arch: p.Arch, epoch: p.Epoch, vendor: p.Vendor, source: src}
			for _, file := range p.Files {
				fd.files = append(fd.files, strings.TrimPrefix(file, "/"))
			}
			s.pkgs = append(s.pkgs, fd)
		}
	}
}

// rpmPurl is an rpm's package URL: pkg:rpm/<distro id, else the vendor's
// first word>/<name>@<version>-<release>?arch=…&epoch=…&distro=….
func (s *scan) rpmPurl(f found, distro string) string {
	ns := s.osID
	if ns == "" {
		if fields := strings.Fields(f.vendor); len(fields) > 0 {
			ns = strings.ToLower(fields[0])
		}
	}
	q := "?arch=" + esc(f.arch)
	if f.epoch != "" {
		q += "&epoch=" + esc(f.epoch)
	}
	if distro != "" {
		q += "&distro=" + esc(distro)
	}
	v := strings.TrimPrefix(f.version, f.epoch+":")
	if ns == "" {
		return fmt.Sprintf("pkg:rpm/%s@%s%s", esc(f.name), esc(v), q)
	}
	return fmt.Sprintf("pkg:rpm/%s/%s@%s%s", esc(ns), esc(f.name), esc(v), q)
}
