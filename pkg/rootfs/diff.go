package rootfs

import (
	"archive/tar"
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Entry names of OCI whiteouts.
const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// DiffStats counts what a diff wrote.
type DiffStats struct {
	Entries   int   // tar entries
	Whiteouts int   // deletions (whiteouts and opaque markers)
	Bytes     int64 // file content
}

// differ writes tar entries for files below root.
type differ struct {
	root    string
	tw      EntryWriter
	inodes  map[[2]uint64]string // (dev, ino) -> first path, for hardlinks
	exclude map[string]bool
	stats   DiffStats
	buf     []byte
	fix     StatFix
	// files takes regular files to read ahead (WriteUpperDiff).
	files chan *fileRead
}

// StatFix is given to the walk functions to rewrite each entry's stat
// before it is compared or written: a mode that emulates owners (ptrace)
// supplies the recorded owner and device type of a placeholder.
type StatFix func(st *unix.Stat_t)

// lstat is unix.Lstat with the walk's StatFix applied.
func (d *differ) lstat(full string, st *unix.Stat_t) error {
	if err := unix.Lstat(full, st); err != nil {
		return err
	}
	if d.fix != nil {
		d.fix(st)
	}
	return nil
}

func newDiffer(root string, tw EntryWriter, exclude []string) *differ {
	d := &differ{root: root, tw: tw, inodes: map[[2]uint64]string{}, exclude: map[string]bool{}, buf: make([]byte, 256<<10)}
	for _, e := range exclude {
		d.exclude[strings.TrimPrefix(path.Clean("/"+e), "/")] = true
	}
	return d
}

// xattrInfo is what an entry's extended attributes say: overlay's own
// markers, and the rest to keep in the layer.
type xattrInfo struct {
	opaque, whiteout bool
	unsupported      string // a redirect or metacopy xattr
	keep             map[string]string
}

// xattrSource lists and reads one entry's extended attributes: through
// its descriptor (fdXattrs) or, for what cannot be opened (symlinks,
// devices), its path (pathXattrs).
type xattrSource struct {
	list func(buf []byte) (int, error)
	get  func(name string, buf []byte) (int, error)
}

func fdXattrs(fd int) xattrSource {
	return xattrSource{
		list: func(buf []byte) (int, error) { return unix.Flistxattr(fd, buf) },
		get:  func(name string, buf []byte) (int, error) { return unix.Fgetxattr(fd, name, buf) },
	}
}

func pathXattrs(p string) xattrSource {
	return xattrSource{
		list: func(buf []byte) (int, error) { return unix.Llistxattr(p, buf) },
		get:  func(name string, buf []byte) (int, error) { return unix.Lgetxattr(p, name, buf) },
	}
}

// readXattrs lists an entry's xattrs (one listxattr call, one getxattr
// per attribute; most files have none).
func readXattrs(src xattrSource) (xattrInfo, error) {
	var xi xattrInfo
	var small [256]byte
	buf := small[:]
	sz, err := src.list(buf)
	if errors.Is(err, unix.ERANGE) {
		if sz, err = src.list(nil); err == nil {
			buf = make([]byte, sz)
			sz, err = src.list(buf)
		}
	}
	if err != nil || sz == 0 {
		return xi, nil // none, or a filesystem without them
	}
	for _, k := range bytes.Split(buf[:sz], []byte{0}) {
		name := string(k)
		if name == "" || name == "security.selinux" {
			continue
		}
		if o, ok := strings.CutPrefix(name, "trusted.overlay."); ok {
			name = "overlay." + o
		} else if o, ok := strings.CutPrefix(name, "user.overlay."); ok {
			name = "overlay." + o
		}
		v, err := getXattr(src, string(k))
		if err != nil {
			continue
		}
		switch name {
		case "overlay.opaque":
			xi.opaque = v == "y"
			continue
		case "overlay.whiteout":
			xi.whiteout = true
			continue
		case "overlay.redirect", "overlay.metacopy":
			xi.unsupported = string(k)
			continue
		}
		if strings.HasPrefix(name, "overlay.") {
			continue // origin, impure, nlink...: overlay bookkeeping
		}
		if xi.keep == nil {
			xi.keep = map[string]string{}
		}
		xi.keep[string(k)] = v
	}
	return xi, nil
}

func getXattr(src xattrSource, name string) (string, error) {
	var small [256]byte
	n, err := src.get(name, small[:])
	if err == nil {
		return string(small[:n]), nil
	}
	if !errors.Is(err, unix.ERANGE) {
		return "", err
	}
	if n, err = src.get(name, nil); err != nil {
		return "", err
	}
	v := make([]byte, n)
	n, err = src.get(name, v)
	if err != nil {
		return "", err
	}
	return string(v[:n]), nil
}

func (d *differ) whiteout(name string) error {
	d.stats.Entries++
	d.stats.Whiteouts++
	return d.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0, Format: tar.FormatPAX, ModTime: time.Unix(0, 0)})
}

// entry writes one file, directory, link or device found at full.
func (d *differ) entry(rel, full string, st *unix.Stat_t, xattrs map[string]string) error {
	h, err := d.header(rel, st, xattrs, func() (string, error) { return os.Readlink(full) })
	if err != nil || h == nil {
		return err
	}
	if err := d.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	d.stats.Entries++
	if h.Typeflag != tar.TypeReg || h.Size == 0 {
		return nil
	}
	fd, err := unix.Open(full, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) { // O_NOATIME on a file of another owner
		fd, err = unix.Open(full, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	defer unix.Close(fd)
	return d.content(rel, fd, h.Size)
}

// header is the tar header of the entry rel with stat st (nil for what a
// layer does not hold: sockets). A regular file with several links is a
// hardlink to the first path of its inode the differ saw.
func (d *differ) header(rel string, st *unix.Stat_t, xattrs map[string]string, readlink func() (string, error)) (*tar.Header, error) {
	// Whole-second mtimes, as the layer keeps them: a sub-second one
	// would cost a PAX record (and a map in every reader's header) per
	// entry.
	h := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, 0),
		Format:  tar.FormatPAX,
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		h.Typeflag = tar.TypeDir
		h.Name += "/"
	case unix.S_IFREG:
		h.Typeflag = tar.TypeReg
		h.Size = st.Size
		if st.Nlink > 1 {
			key := [2]uint64{uint64(st.Dev), st.Ino}
			if first, ok := d.inodes[key]; ok {
				h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			} else {
				d.inodes[key] = rel
			}
		}
	case unix.S_IFLNK:
		h.Typeflag = tar.TypeSymlink
		target, err := readlink()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rel, err)
		}
		h.Linkname = target
	case unix.S_IFCHR, unix.S_IFBLK:
		h.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			h.Typeflag = tar.TypeBlock
		}
		h.Devmajor, h.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		h.Typeflag = tar.TypeFifo
	default:
		return nil, nil // sockets are not content
	}
	for k, v := range xattrs {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+k] = v
	}
	return h, nil
}

// copyFromFd copies up to size bytes of the file fd to w with plain reads
// (an *os.File costs system calls of its own per file: 50,000 new files
// are 50,000 of them).
func copyFromFd(w io.Writer, fd int, size int64, buf []byte) (int64, error) {
	var n int64
	for n < size {
		b := buf
		if rest := size - n; rest < int64(len(b)) {
			b = b[:rest]
		}
		m, err := unix.Read(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			return n, nil // shorter than its stat said
		}
		if _, err := w.Write(b[:m]); err != nil {
			return n, err
		}
		n += int64(m)
	}
	return n, nil
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	sort.Strings(names)
	return names, nil
}

func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// Meta is what the metadata walk compares about one entry. Content is
// never read: a changed file has a new size, mtime or ctime.
type Meta struct {
	Mode     uint32 // type and permission bits
	UID, GID uint32
	Size     int64
	Mtime    int64 // ns
	Ctime    int64 // ns
	Ino      uint64
	Dev      uint64
	Rdev     uint64
	Link     string // symlink target
}

// Snapshot is the metadata of every entry below a root, by relative path.
type Snapshot map[string]Meta

func metaOf(full string, st *unix.Stat_t) (Meta, error) {
	m := Meta{
		Mode: st.Mode, UID: st.Uid, GID: st.Gid, Size: st.Size,
		Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(), Ino: st.Ino, Dev: uint64(st.Dev), Rdev: uint64(st.Rdev),
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		l, err := os.Readlink(full)
		if err != nil {
			return m, err
		}
		m.Link = l
	}
	return m, nil
}

// TakeSnapshot records the metadata of everything below root (paths in
// exclude and below them left out).
func TakeSnapshot(root string, exclude []string) (Snapshot, error) {
	return TakeSnapshotFix(root, exclude, nil)
}

// TakeSnapshotFix is TakeSnapshot with each entry's stat rewritten by fix.
func TakeSnapshotFix(root string, exclude []string, fix StatFix) (Snapshot, error) {
	d := newDiffer(root, nil, exclude)
	d.fix = fix
	snap := Snapshot{}
	var walk func(dir string) error
	walk = func(dir string) error {
		names, err := readNames(filepath.Join(root, dir))
		if err != nil {
			return err
		}
		for _, n := range names {
			rel := joinRel(dir, n)
			if d.exclude[rel] {
				continue
			}
			full := filepath.Join(root, rel)
			var st unix.Stat_t
			if err := d.lstat(full, &st); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			m, err := metaOf(full, &st)
			if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			snap[rel] = m
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				if err := walk(rel); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return snap, walk("")
}

// WriteWalkDiff compares root with the snapshot before and writes what
// changed as an OCI layer tar to tw: new and changed entries (a changed
// directory as its own entry only), ".wh." whiteouts for what is gone. It
// returns the new snapshot. Unchanged files are never opened.
func WriteWalkDiff(root string, before Snapshot, exclude []string, tw EntryWriter) (Snapshot, DiffStats, error) {
	return WriteWalkDiffFix(root, before, exclude, tw, nil)
}

// WriteWalkDiffFix is WriteWalkDiff with each entry's stat rewritten by
// fix.
func WriteWalkDiffFix(root string, before Snapshot, exclude []string, tw EntryWriter, fix StatFix) (Snapshot, DiffStats, error) {
	d := newDiffer(root, tw, exclude)
	d.fix = fix
	after := make(Snapshot, len(before))
	children := map[string][]string{}
	for p := range before {
		dir, name := "", p
		if i := strings.LastIndexByte(p, '/'); i >= 0 {
			dir, name = p[:i], p[i+1:]
		}
		children[dir] = append(children[dir], name)
	}
	var walk func(dir string) error
	walk = func(dir string) error {
		names, err := readNames(filepath.Join(root, dir))
		if err != nil {
			return err
		}
		present := map[string]bool{}
		for _, n := range names {
			present[n] = true
		}
		// Deletions first: a whiteout sorts anywhere in its directory, and
		// applying it first lets a new entry of the same name follow.
		for _, gone := range deletedNames(children[dir], present) {
			if err := d.whiteout(joinRel(dir, whiteoutPrefix+gone)); err != nil {
				return err
			}
		}
		for _, n := range names {
			rel := joinRel(dir, n)
			if d.exclude[rel] {
				continue
			}
			full := filepath.Join(root, rel)
			var st unix.Stat_t
			if err := d.lstat(full, &st); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			m, err := metaOf(full, &st)
			if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			after[rel] = m
			old, had := before[rel]
			isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
			if !had || changed(old, m) {
				xa, err := readXattrs(pathXattrs(full))
				if err != nil {
					return fmt.Errorf("%s: %w", rel, err)
				}
				if err := d.entry(rel, full, &st, xa.keep); err != nil {
					return err
				}
			} else if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink > 1 {
				// Unchanged, but a new link to it may follow: remember it.
				key := [2]uint64{uint64(st.Dev), st.Ino}
				if _, ok := d.inodes[key]; !ok {
					d.inodes[key] = rel
				}
			}
			if isDir {
				if err := walk(rel); err != nil {
					return err
				}
			}
		}
		return nil
	}
	err := walk("")
	return after, d.stats, err
}

// changed compares two snapshots of an entry. A directory counts as
// changed only by type, mode or owner: its times move whenever an entry in
// it comes or goes, which the entries themselves show.
func changed(a, b Meta) bool {
	if a.Mode&unix.S_IFMT == unix.S_IFDIR && b.Mode&unix.S_IFMT == unix.S_IFDIR {
		return a.Mode != b.Mode || a.UID != b.UID || a.GID != b.GID
	}
	return a != b
}

// deletedNames lists the names that are not present, sorted.
func deletedNames(names []string, present map[string]bool) []string {
	var out []string
	for _, n := range names {
		if !present[n] {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// SaveSnapshot writes snap to file; LoadSnapshot reads it back.
func SaveSnapshot(file string, snap Snapshot) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := gob.NewEncoder(f).Encode(snap); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// LoadSnapshot reads a snapshot written by SaveSnapshot.
func LoadSnapshot(file string) (Snapshot, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var snap Snapshot
	if err := gob.NewDecoder(f).Decode(&snap); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", file, err)
	}
	return snap, nil
}
