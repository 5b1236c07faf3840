package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// chrootMove is a directory mount of a chroot step, which has no mount
// namespace: the directory is renamed into the step's root at the target
// for the step and back out afterwards (rename keeps a cache directory
// whole, and never copies it). What the image had at the target is moved
// out of the root meanwhile and put back.
//
// A cache directory moves itself (under an flock, as sharing=locked); a
// bind of the build context moves a copy (the step's writes are
// discarded with it, as docker discards them); a tmpfs moves an empty
// directory.
type chrootMove struct {
	target string // absolute, in the root
	kind   MountType
	dirFD  int    // the directory holding name, outside the root
	name   string // what moves in
	// scratchFD is a directory outside the root where what the image had
	// at the target waits.
	scratchFD int
	aside     string
	hasAside  bool
	lock      *os.File
}

// chrootMoves prepares the directory mounts of a chroot step, while the
// host is visible: copies of bind sources and empty tmpfs directories in
// the step's scratch directory, cache directories locked.
func chrootMoves(rs *runSpec) ([]*chrootMove, error) {
	var out []*chrootMove
	fail := func(err error) ([]*chrootMove, error) {
		closeMoves(out)
		return nil, err
	}
	for i, m := range rs.Mounts {
		if m.File || (m.Type != MountCache && m.Type != MountBind && m.Type != MountTmpfs) {
			continue
		}
		if rs.Scratch == "" {
			return fail(errors.New("no scratch directory for the step's mounts"))
		}
		mv := &chrootMove{target: filepath.Clean("/" + m.Target), kind: m.Type, dirFD: -1, scratchFD: -1, aside: fmt.Sprintf("aside%d", i)}
		out = append(out, mv)
		src := ""
		switch m.Type {
		case MountCache:
			src = m.Source
			l, err := os.OpenFile(src+".lock", os.O_CREATE|os.O_RDONLY, 0o600)
			if err != nil {
				return fail(err)
			}
			mv.lock = l
			if err := unix.Flock(int(l.Fd()), unix.LOCK_EX); err != nil {
				return fail(fmt.Errorf("locking the cache %s: %w", m.Target, err))
			}
			if err := os.MkdirAll(src, 0o755); err != nil {
				return fail(err)
			}
		case MountBind:
			src = filepath.Join(rs.Scratch, fmt.Sprintf("bind%d", i))
			if err := copyTree(m.Source, src); err != nil {
				return fail(fmt.Errorf("--mount target=%s: copying %s: %w", m.Target, m.Source, err))
			}
		case MountTmpfs:
			src = filepath.Join(rs.Scratch, fmt.Sprintf("tmpfs%d", i))
			if err := os.Mkdir(src, 0o1777); err != nil {
				return fail(err)
			}
			if err := os.Chmod(src, 0o1777); err != nil {
				return fail(err)
			}
		}
		var err error
		if mv.dirFD, err = unix.Open(filepath.Dir(src), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			return fail(err)
		}
		mv.name = filepath.Base(src)
		if mv.scratchFD, err = unix.Open(rs.Scratch, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			return fail(err)
		}
	}
	return out, nil
}

func closeMoves(ms []*chrootMove) {
	for _, m := range ms {
		if m.dirFD >= 0 {
			unix.Close(m.dirFD)
		}
		if m.scratchFD >= 0 {
			unix.Close(m.scratchFD)
		}
		if m.lock != nil {
			m.lock.Close()
		}
	}
}

// placeMoves moves the mounts in (the process is in the root; the target's
// missing parents are made and reported in made). It returns what moves
// them back out; on an error everything done is undone.
func placeMoves(ms []*chrootMove) (made []string, undo func(), err error) {
	var done []*chrootMove
	undo = func() {
		for i := len(done) - 1; i >= 0; i-- {
			done[i].moveOut()
		}
		closeMoves(ms)
	}
	for _, m := range ms {
		var mk []string
		mk, err = mkdirsIn(filepath.Dir(m.target))
		made = append(made, mk...)
		if err != nil {
			break
		}
		var st unix.Stat_t
		if lerr := unix.Lstat(m.target, &st); lerr == nil {
			// Hide what the image has there (a symlink included: it is
			// moved, never followed).
			if err = unix.Renameat(unix.AT_FDCWD, m.target, m.scratchFD, m.aside); err != nil {
				break
			}
			m.hasAside = true
		}
		if err = unix.Renameat(m.dirFD, m.name, unix.AT_FDCWD, m.target); err != nil {
			if m.hasAside {
				_ = unix.Renameat(m.scratchFD, m.aside, unix.AT_FDCWD, m.target)
			}
			break
		}
		done = append(done, m)
	}
	if err != nil {
		undo()
		return made, nil, err
	}
	return made, undo, nil
}

// moveOut takes a mount back out of the root and puts back what the image
// had there. A cache the step removed or replaced by something else (a
// symlink) is recreated empty: the cache directory is a directory.
func (m *chrootMove) moveOut() {
	var st unix.Stat_t
	switch err := unix.Lstat(m.target, &st); {
	case err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR:
		if unix.Renameat(unix.AT_FDCWD, m.target, m.dirFD, m.name) != nil {
			_ = removeAll(m.target)
		}
	case err == nil:
		_ = unix.Unlink(m.target)
	}
	if m.kind == MountCache {
		if err := unix.Fstatat(m.dirFD, m.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			_ = unix.Mkdirat(m.dirFD, m.name, 0o755)
		}
	}
	if m.hasAside {
		_ = unix.Renameat(m.scratchFD, m.aside, unix.AT_FDCWD, m.target)
	}
}

// mkdirsIn makes the missing directories of dir (absolute, in the current
// root), refusing to go through anything but directories; it returns what
// it made, relative to the root, parents first.
func mkdirsIn(dir string) ([]string, error) {
	var made []string
	cur := "/"
	for _, c := range strings.Split(strings.TrimPrefix(filepath.Clean(dir), "/"), "/") {
		if c == "" {
			continue
		}
		cur = filepath.Join(cur, c)
		var st unix.Stat_t
		err := unix.Lstat(cur, &st)
		switch {
		case err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR:
			continue
		case err == nil:
			return made, fmt.Errorf("%s is not a directory in the image", cur)
		case errors.Is(err, unix.ENOENT):
			if err := os.Mkdir(cur, 0o755); err != nil {
				return made, err
			}
			made = append(made, strings.TrimPrefix(cur, "/"))
		default:
			return made, err
		}
	}
	return made, nil
}

// copyTree copies the tree src (a build context directory: trusted, but
// its symlinks are copied as symlinks, never followed) to dst, keeping
// modes and owners.
func copyTree(src, dst string) error {
	return filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		st, _ := fi.Sys().(*unix.Stat_t)
		switch {
		case fi.Mode().IsDir():
			if err := os.Mkdir(to, 0o700); err != nil {
				return err
			}
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, to); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if err := copyFile(p, to); err != nil {
				return err
			}
		default:
			return nil // devices, sockets, fifos: not in a build context
		}
		if st != nil {
			_ = unix.Lchown(to, int(st.Uid), int(st.Gid))
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return os.Chmod(to, fi.Mode()&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky))
		}
		return nil
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
