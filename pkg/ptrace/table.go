package ptrace

import (
	"archive/tar"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/atomicfile"
)

// Owner is what the table says about one inode: the owner a process
// gave it and, for a device placeholder, the device.
type Owner struct {
	UID, GID uint32
	// Type is unix.S_IFCHR or unix.S_IFBLK for a device whose placeholder
	// is an empty regular file (0 otherwise).
	Type uint32
	Rdev uint64
}

// Key is an inode: (device, inode number).
type Key [2]uint64

// Table is the ownership table of one root directory: the owners and
// devices that files would have if the process tree had been root. Files
// of the real user not in the table belong to root (0:0).
type Table struct {
	// UID and GID are the real user's: only files they own are answered
	// from the table (a file of another user is shown as it is).
	UID, GID uint32
	Owners   map[Key]Owner
}

// NewTable returns an empty table for the calling user.
func NewTable() *Table {
	return &Table{UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Owners: map[Key]Owner{}}
}

// TableFile is where the table of the working copy dir is kept.
func TableFile(dir string) string { return filepath.Clean(dir) + ".owners" }

// LoadTable reads a table saved by Save; a missing file is an empty table.
func LoadTable(file string) (*Table, error) {
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return NewTable(), nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t := &Table{}
	if err := gob.NewDecoder(f).Decode(t); err != nil {
		return nil, fmt.Errorf("ownership table %s: %w", file, err)
	}
	if t.Owners == nil {
		t.Owners = map[Key]Owner{}
	}
	return t, nil
}

// Save writes the table to file atomically.
func (t *Table) Save(file string) error {
	return atomicfile.Write(file, 0o644, func(w io.Writer) error { return gob.NewEncoder(w).Encode(t) })
}

func keyOf(st *unix.Stat_t) Key { return Key{uint64(st.Dev), st.Ino} }

// set records owner o for an inode; root's plain files need no entry.
func (t *Table) set(k Key, o Owner) {
	if o == (Owner{}) {
		delete(t.Owners, k)
		return
	}
	t.Owners[k] = o
}

// Fix rewrites a stat result of a file below the root as root would see
// it: the owner from the table (root when absent), and the device type
// of a placeholder. Files of other users are left alone.
func (t *Table) Fix(st *unix.Stat_t) {
	if st.Uid != t.UID {
		return
	}
	o := t.Owners[keyOf(st)]
	st.Uid, st.Gid = o.UID, o.GID
	if o.Type != 0 && st.Mode&unix.S_IFMT == unix.S_IFREG {
		st.Mode = o.Type | st.Mode&0o7777
		st.Rdev = o.Rdev
	}
}

// Prune drops the entries of inodes that are no longer below root (so a
// reused inode number does not inherit an owner).
func (t *Table) Prune(live map[Key]bool) {
	for k := range t.Owners {
		if !live[k] {
			delete(t.Owners, k)
		}
	}
}

// Apply extracts the layer tar r onto dir as the caller (no chown, no
// device nodes) and records the owners and devices of its entries in t.
func (t *Table) Apply(dir string, r io.Reader) ([]string, error) {
	pr, pw := io.Pipe()
	hdrs := make(chan []*tar.Header, 1)
	go func() {
		var hs []*tar.Header
		tr := tar.NewReader(pr)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			hs = append(hs, h)
		}
		_, _ = io.Copy(io.Discard, pr)
		hdrs <- hs
	}()
	var skipped []string
	err := archive.Extract(io.TeeReader(r, pw), dir, archive.ExtractOptions{OnSkip: func(name, reason string) {
		if !strings.Contains(reason, "mknod") && !strings.Contains(reason, "xattr") {
			skipped = append(skipped, name+": "+reason)
		}
	}})
	pw.Close()
	hs := <-hdrs
	if err != nil {
		return nil, err
	}
	for _, h := range hs {
		name := path.Clean("/" + h.Name)
		base := path.Base(name)
		if strings.HasPrefix(base, ".wh.") {
			continue
		}
		full := filepath.Join(dir, name)
		var st unix.Stat_t
		if (h.Typeflag == tar.TypeChar || h.Typeflag == tar.TypeBlock) && unix.Lstat(full, &st) != nil {
			// mknod was refused: an empty placeholder with the mode.
			if err := os.WriteFile(full, nil, 0o600); err != nil {
				return nil, fmt.Errorf("device placeholder %s: %w", h.Name, err)
			}
			_ = os.Chmod(full, os.FileMode(h.Mode&0o777))
		}
		if err := unix.Lstat(full, &st); err != nil {
			continue // not extracted (skipped)
		}
		if st.Uid != t.UID {
			continue
		}
		o := Owner{UID: uint32(h.Uid), GID: uint32(h.Gid)}
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			switch h.Typeflag {
			case tar.TypeChar:
				o.Type, o.Rdev = unix.S_IFCHR, unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))
			case tar.TypeBlock:
				o.Type, o.Rdev = unix.S_IFBLK, unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))
			}
		}
		t.set(keyOf(&st), o)
	}
	return skipped, nil
}
