package rpmdb

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// fixture is an rpm database made by rpm itself: packages built with
// rpmbuild (one x86_64 package with epoch 2 and 300 files, so its header
// overflows SQLite's pages, and 60 noarch subpackages, so the table has
// interior pages) installed with rpm -i --justdb.
type fixture struct {
	dbDir string
	// want is rpm -qa's "NAME EVR ARCH" per package, sorted.
	want []string
	// files is rpm -ql of the main package.
	files []string
	err   error
}

var (
	fixtureOnce sync.Once
	shared      fixture
)

func rpmFixture(t *testing.T) *fixture {
	t.Helper()
	for _, tool := range []string{"rpm", "rpmbuild"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (Debian's rpm package; .ci/deps installs it): %v", tool, err)
		}
	}
	fixtureOnce.Do(func() { shared = makeFixture() })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return &shared
}

func makeFixture() fixture {
	dir, err := os.MkdirTemp("", "kiln-rpmdb-")
	if err != nil {
		return fixture{err: err}
	}
	var spec strings.Builder
	spec.WriteString("Name: kiln-main\nVersion: 1.2.3\nRelease: 4.fc39\nEpoch: 2\nSummary: main\nLicense: MIT and BSD\nVendor: Kiln Test\n%description\nmain\n")
	for i := 0; i < 60; i++ {
		fmt.Fprintf(&spec, "%%package -n kiln-sub%02d\nSummary: sub\nVersion: 0.%d\nBuildArch: noarch\n%%description -n kiln-sub%02d\nsub\n%%files -n kiln-sub%02d\n/usr/share/kiln-sub%02d/f\n", i, i, i, i, i)
	}
	spec.WriteString("%install\n")
	spec.WriteString("for i in $(seq -w 0 59); do mkdir -p %{buildroot}/usr/share/kiln-sub$i; echo $i > %{buildroot}/usr/share/kiln-sub$i/f; done\n")
	spec.WriteString("mkdir -p %{buildroot}/usr/lib/kiln-main/a %{buildroot}/usr/lib/kiln-main/b\n")
	spec.WriteString("for i in $(seq 1 150); do echo $i > %{buildroot}/usr/lib/kiln-main/a/file-with-a-long-name-$i; echo $i > %{buildroot}/usr/lib/kiln-main/b/other-$i; done\n")
	spec.WriteString("%files\n/usr/lib/kiln-main\n")
	specPath := filepath.Join(dir, "kiln.spec")
	if err := os.WriteFile(specPath, []byte(spec.String()), 0o644); err != nil {
		return fixture{err: err}
	}
	top := filepath.Join(dir, "top")
	run := func(name string, args ...string) (string, error) {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	if _, err := run("rpmbuild", "--define", "_topdir "+top, "--target", "x86_64", "-bb", specPath); err != nil {
		return fixture{err: err}
	}
	rpms, _ := filepath.Glob(filepath.Join(top, "RPMS", "*", "*.rpm"))
	if len(rpms) != 61 {
		return fixture{err: fmt.Errorf("rpmbuild made %d packages, want 61", len(rpms))}
	}
	f := fixture{dbDir: filepath.Join(dir, "db")}
	if _, err := run("rpm", append([]string{"--dbpath", f.dbDir, "-i", "--justdb", "--nodeps", "--ignorearch", "--ignoreos"}, rpms...)...); err != nil {
		return fixture{err: err}
	}
	out, err := run("rpm", "--dbpath", f.dbDir, "-qa", "--qf", "%{NAME} %|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE} %{ARCH}\n")
	if err != nil {
		return fixture{err: err}
	}
	f.want = lines(out)
	out, err = run("rpm", "--dbpath", f.dbDir, "-ql", "kiln-main")
	if err != nil {
		return fixture{err: err}
	}
	f.files = lines(out)
	return f
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "rpm:") {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}

func summary(pkgs []*Package) []string {
	var out []string
	for _, p := range pkgs {
		out = append(out, p.Name+" "+p.EVR()+" "+p.Arch)
	}
	sort.Strings(out)
	return out
}

// check compares what was read with what rpm says.
func (f *fixture) check(t *testing.T, pkgs []*Package) {
	t.Helper()
	if got := summary(pkgs); strings.Join(got, "\n") != strings.Join(f.want, "\n") {
		t.Errorf("packages:\n got %v\nwant %v", got, f.want)
	}
	for _, p := range pkgs {
		if p.Name != "kiln-main" {
			continue
		}
		files := append([]string(nil), p.Files...)
		sort.Strings(files)
		if strings.Join(files, "\n") != strings.Join(f.files, "\n") {
			t.Errorf("kiln-main's files: %d, rpm -ql lists %d", len(files), len(f.files))
		}
		if p.Vendor != "Kiln Test" || p.License != "MIT and BSD" || p.Epoch != "2" || !strings.HasPrefix(p.SourceRPM, "kiln-main-1.2.3-4.fc39.src.rpm") {
			t.Errorf("kiln-main: %+v", *p)
		}
	}
}

func TestSQLite(t *testing.T) {
	t.Parallel()
	f := rpmFixture(t)
	db, err := os.ReadFile(filepath.Join(f.dbDir, "rpmdb.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	wal, _ := os.ReadFile(filepath.Join(f.dbDir, "rpmdb.sqlite-wal"))
	pkgs, err := SQLitePackages(db, wal)
	if err != nil {
		t.Fatal(err)
	}
	f.check(t, pkgs)
	// Truncated or damaged databases are errors, never panics.
	for _, n := range []int{0, 99, 4096, len(db) / 2} {
		if _, err := SQLitePackages(db[:n], nil); err == nil && n < len(db)/2 {
			t.Errorf("a database cut at %d bytes read without error", n)
		}
	}
	corrupt(t, db, func(b []byte) { _, _ = SQLitePackages(b, nil) })
}

// corrupt calls read with copies of b damaged in many ways (what it
// returns does not matter: it must not panic or hang).
func corrupt(t *testing.T, b []byte, read func([]byte)) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 300; i++ {
		bad := append([]byte(nil), b...)
		for j := 0; j < 1+i%8; j++ {
			bad[r.IntN(len(bad))] = byte(r.IntN(256))
		}
		read(bad)
	}
}

// TestSQLiteWAL: rows committed to the write-ahead log and not yet
// checkpointed into the database file are read (SQLite itself, through
// Python's sqlite3, writes the log and keeps it while its connection is
// open).
func TestSQLiteWAL(t *testing.T) {
	t.Parallel()
	f := rpmFixture(t)
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skipf("python3 is not installed: %v", err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "rpmdb.sqlite")
	b, err := os.ReadFile(filepath.Join(f.dbDir, "rpmdb.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, b, 0o644); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(dir, "snap")
	// Delete kiln-sub07's row and copy kiln-main's under a new rowid, then
	// copy the files while the log still holds both transactions.
	script := `
import sqlite3, shutil, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute("PRAGMA wal_autocheckpoint=0")
rows = c.execute("SELECT hnum, blob FROM Packages").fetchall()
import struct
def name(blob):
    il, dl = struct.unpack(">II", blob[:8])
    for i in range(il):
        tag, typ, off, cnt = struct.unpack(">iIiI", blob[8+16*i:24+16*i])
        if tag == 1000:
            d = blob[8+16*il:]
            return d[off:d.index(b"\0", off)].decode()
for hnum, blob in rows:
    if name(blob) == "kiln-sub07":
        c.execute("DELETE FROM Packages WHERE hnum=?", (hnum,))
    if name(blob) == "kiln-main":
        main = blob
c.execute("INSERT INTO Packages (hnum, blob) VALUES (100000, ?)", (main,))
shutil.copy(sys.argv[1], sys.argv[2])
shutil.copy(sys.argv[1] + "-wal", sys.argv[2] + "-wal")
c.close()
`
	if out, err := exec.Command("python3", "-c", script, src, snap).CombinedOutput(); err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	db, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	wal, err := os.ReadFile(snap + "-wal")
	if err != nil || len(wal) == 0 {
		t.Fatalf("no write-ahead log: %v", err)
	}
	pkgs, err := SQLitePackages(db, wal)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, w := range f.want {
		if !strings.HasPrefix(w, "kiln-sub07 ") {
			want = append(want, w)
		}
		if strings.HasPrefix(w, "kiln-main ") {
			want = append(want, w)
		}
	}
	sort.Strings(want)
	if got := summary(pkgs); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("with the log:\n got %v\nwant %v", got, want)
	}
	// Without the log, the database file alone is the old state.
	old, err := SQLitePackages(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.check(t, old)
}

// TestBDB: the same headers in a Berkeley DB hash database made by
// Berkeley DB's own db_load (RHEL 7 and 8 keep /var/lib/rpm/Packages so),
// keyed by header number as rpm keys them.
func TestBDB(t *testing.T) {
	t.Parallel()
	f := rpmFixture(t)
	load := ""
	for _, n := range []string{"db5.3_load", "db_load"} {
		if p, err := exec.LookPath(n); err == nil {
			load = p
			break
		}
	}
	if load == "" {
		t.Skip("db_load is not installed (Debian's db5.3-util; .ci/deps installs it)")
	}
	db, err := os.ReadFile(filepath.Join(f.dbDir, "rpmdb.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := openSQLite(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	root, err := d.tableRoot("Packages")
	if err != nil {
		t.Fatal(err)
	}
	// db_dump's format: hex keys and values (keys little-endian, as rpm
	// writes them on x86), with rpm's 4-byte counter at key 0.
	var dump strings.Builder
	dump.WriteString("VERSION=3\nformat=bytevalue\ntype=hash\nh_nelem=64\nHEADER=END\n 00000000\n 3d000000\n")
	err = d.walk(root, 0, map[uint32]bool{}, func(rowid uint64, payload []byte) error {
		cols, err := columns(payload, 2)
		if err != nil {
			return err
		}
		fmt.Fprintf(&dump, " %02x%02x%02x%02x\n %x\n", byte(rowid), byte(rowid>>8), byte(rowid>>16), byte(rowid>>24), cols[1])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dump.WriteString("DATA=END\n")
	dir := t.TempDir()
	in := filepath.Join(dir, "dump.txt")
	if err := os.WriteFile(in, []byte(dump.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "Packages")
	if b, err := exec.Command(load, "-f", in, out).CombinedOutput(); err != nil {
		t.Fatalf("db_load: %v\n%s", err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	pkgs, err := BDBPackages(data)
	if err != nil {
		t.Fatal(err)
	}
	f.check(t, pkgs)
	if _, err := BDBPackages(db); err == nil {
		t.Error("a SQLite file read as Berkeley DB")
	}
	if _, err := SQLitePackages(data, nil); err == nil {
		t.Error("a Berkeley DB file read as SQLite")
	}
	corrupt(t, data, func(b []byte) { _, _ = BDBPackages(b) })
}

// TestNDB: the same headers in rpm's ndb layout (Packages.db). Debian's
// rpm is built without ndb, so the file is laid out here as rpm's
// lib/backend/ndb/rpmpkg.c writes it: the header, one slot page (with
// free slots), and each blob in 16-byte blocks.
func TestNDB(t *testing.T) {
	t.Parallel()
	f := rpmFixture(t)
	db, err := os.ReadFile(filepath.Join(f.dbDir, "rpmdb.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := openSQLite(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	root, err := d.tableRoot("Packages")
	if err != nil {
		t.Fatal(err)
	}
	var blobs [][]byte
	err = d.walk(root, 0, map[uint32]bool{}, func(_ uint64, payload []byte) error {
		cols, err := columns(payload, 2)
		blobs = append(blobs, cols[1])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	out := make([]byte, 4096)
	le.PutUint32(out, ndbMagic)
	le.PutUint32(out[8:], 7) // generation
	le.PutUint32(out[12:], 1)
	for i := 2; i < 256; i++ {
		le.PutUint32(out[i*16:], ndbSlotMagic) // free unless filled below
	}
	for i, b := range blobs {
		slot := out[(2+2*i)*16:] // every other slot stays free
		off := len(out)
		le.PutUint32(slot[4:], uint32(i+1))
		le.PutUint32(slot[8:], uint32(off/16))
		blob := make([]byte, 16, 16+len(b)+32)
		le.PutUint32(blob, ndbBlobMagic)
		le.PutUint32(blob[4:], uint32(i+1))
		le.PutUint32(blob[12:], uint32(len(b)))
		blob = append(blob, b...)
		blob = append(blob, make([]byte, 16+(16-len(blob)%16)%16)...) // tail, block padding
		le.PutUint32(slot[12:], uint32(len(blob)/16))
		out = append(out, blob...)
	}
	pkgs, err := NDBPackages(out)
	if err != nil {
		t.Fatal(err)
	}
	f.check(t, pkgs)
	if _, err := NDBPackages(db); err == nil {
		t.Error("a SQLite file read as ndb")
	}
	corrupt(t, out, func(b []byte) { _, _ = NDBPackages(b) })
}
