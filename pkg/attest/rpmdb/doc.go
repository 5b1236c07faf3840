// Package rpmdb reads the packages of an rpm database without rpm, cgo or
// a database library: the header blobs out of rpm's SQLite database
// (rpmdb.sqlite, Fedora 33+ and RHEL 9, with its write-ahead log) and its
// Berkeley DB hash database (Packages, RHEL 7 and 8) and its ndb database
// (Packages.db, openSUSE and SLE), and the fields of
// each header (name, epoch, version, release, arch, vendor, license,
// source rpm, and the files it owns).
//
// Only what these files need is read: SQLite's table b-trees (interior
// and leaf pages, overflow chains) and records, and Berkeley DB's hash
// pages with their off-page items; ndb's slots and blobs (its Adler-32
// blob checksums are not checked). Every offset is checked: hostile input
// is an error, never a panic or an endless loop.
package rpmdb
