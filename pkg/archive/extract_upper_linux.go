package archive

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Extraction into an overlay's upper directory (ExtractOptions.Upper).
// Where extracting through the overlay removes from the layers below, the
// upper directory gets what the overlay itself would write: a whiteout
// (a 0:0 character device) for a deleted name, the opaque xattr on a
// directory whose lower contents are gone. Where the overlay would copy
// up (a parent directory the layer does not list, a hardlink's target),
// the lower's file is copied into the upper directory.

// upperState is the extractor's state in upper mode.
type upperState struct {
	opts    *UpperOptions
	lowerFd int // the merged view of the layers below; -1 for none
	// Whiteouts this extraction made, by path: a directory made there
	// later hides the lower one (it gets the opaque xattr).
	whited map[string]bool
	// Directories of the upper directory that hide the lower ones (made
	// opaque): nothing below them is looked up in the lower view.
	hides map[string]bool
	// rootOpaque: the layer's root is opaque (the overlay ignores the
	// xattr on its root: finish whites out the lower names instead).
	rootOpaque bool
}

func newUpperState(o *UpperOptions) (*upperState, error) {
	u := &upperState{opts: o, lowerFd: -1, whited: map[string]bool{}, hides: map[string]bool{}}
	if o.Lower != "" {
		fd, err := unix.Open(o.Lower, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("the layers below %s: %w", o.Lower, err)
		}
		u.lowerFd = fd
	}
	return u, nil
}

func (u *upperState) close() {
	if u.lowerFd >= 0 {
		unix.Close(u.lowerFd)
		u.lowerFd = -1
	}
}

// lowerStat looks p up in the layers below, as the merged view shows it
// under the upper directory made so far: nothing below an opaque or
// whited-out directory, nothing through a symlink or a non-directory.
func (x *extractor) lowerStat(p string) (unix.Stat_t, bool) {
	var st unix.Stat_t
	u := x.up
	if u.lowerFd < 0 || u.rootOpaque || p == "" {
		return st, false
	}
	for q := parentPath(p); q != ""; q = parentPath(q) {
		if u.hides[q] || u.whited[q] {
			return st, false
		}
	}
	pfd, err := x.lowerDir(parentPath(p))
	if err != nil {
		return st, false
	}
	defer closeIfNotRoot(pfd, u.lowerFd)
	if err := unix.Fstatat(pfd, path.Base(p), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, false
	}
	return st, true
}

func closeIfNotRoot(fd, root int) {
	if fd != root {
		unix.Close(fd)
	}
}

// lowerDir opens the directory p of the lower view (O_PATH), through no
// symlink; the lower root itself is returned as is.
func (x *extractor) lowerDir(p string) (int, error) {
	root := x.up.lowerFd
	if p == "" {
		return root, nil
	}
	if !x.noOpenat2 {
		fd, err := unix.Openat2(root, p, &unix.OpenHow{
			Flags:   uint64(dirOpenFlags),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err == nil || !(errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.E2BIG)) {
			return fd, err
		}
	}
	cur := root
	for _, c := range strings.Split(p, "/") {
		fd, err := unix.Openat(cur, c, dirOpenFlags, 0)
		closeIfNotRoot(cur, root)
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}

// upperMkdir makes the missing directory c (at clean path p) in cur, the
// upper directory's parent: with the lower directory's mode and owner
// when the layers below have one (a copy-up), else 0755 as for any
// directory a layer does not list. A lower symlink or non-directory there
// is refused as extracting through the overlay refuses it.
func (x *extractor) upperMkdir(cur int, c, p string) error {
	st, ok := x.lowerStat(p)
	if !ok {
		return x.plainMkdir(cur, c, parentPath(p))
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
	case unix.S_IFLNK:
		return fmt.Errorf("%q %w", p, errSymlinkParent)
	default:
		return fmt.Errorf("%q is not a directory: %w", p, unix.ENOTDIR)
	}
	if err := x.plainMkdir(cur, c, parentPath(p)); err != nil {
		return err
	}
	// Copied up: its mode may not let the caller write to it.
	delete(x.fresh, p)
	return x.copyUpMeta(cur, c, p, &st, true)
}

// plainMkdir makes c in cur with mode 0755, whatever the umask.
func (x *extractor) plainMkdir(cur int, c, parent string) error {
	err := unix.Mkdirat(cur, c, 0o755)
	if errors.Is(err, unix.EACCES) && x.makeWritable(parent) {
		err = unix.Mkdirat(cur, c, 0o755)
	}
	if err != nil {
		return err
	}
	// Explicit: the umask may have taken bits away.
	_ = unix.Fchmodat(cur, c, 0o755, 0)
	x.fresh[joinPath(parent, c)] = true
	return nil
}

// copyUpMeta gives c (in dfd, at path p) the owner, mode, xattrs and, but
// for directories (whose times the layer's entries change anyway), the
// times of the lower file st.
func (x *extractor) copyUpMeta(dfd int, c, p string, st *unix.Stat_t, dir bool) error {
	if x.opts.Chown {
		if err := unix.Fchownat(dfd, c, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("copy up %q: chown %d:%d: %w", p, st.Uid, st.Gid, err)
		}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Fchmodat(dfd, c, st.Mode&0o7777, 0); err != nil {
			return fmt.Errorf("copy up %q: chmod: %w", p, err)
		}
	}
	x.copyUpXattrs(p)
	if dir {
		return nil
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(dfd, c, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("copy up %q: set times: %w", p, err)
	}
	return nil
}

// copyUpXattrs copies the extended attributes of p in the lower view to
// p in the upper directory (but the overlay's own); what cannot be read
// or set is reported to OnSkip, as the layer's own xattrs are.
func (x *extractor) copyUpXattrs(p string) {
	lower := path.Join(x.up.opts.Lower, p)
	upper := path.Join(x.rootPath, p)
	sz, err := unix.Llistxattr(lower, nil)
	if err != nil || sz == 0 {
		return
	}
	buf := make([]byte, sz)
	if sz, err = unix.Llistxattr(lower, buf); err != nil {
		return
	}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		if name == "" || strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.") {
			continue
		}
		n, err := unix.Lgetxattr(lower, name, nil)
		if err != nil {
			continue
		}
		v := make([]byte, n)
		if n, err = unix.Lgetxattr(lower, name, v); err != nil {
			continue
		}
		if err := unix.Lsetxattr(upper, name, v[:n], 0); err != nil {
			x.opts.skip(p, fmt.Sprintf("copy up xattr %s: %v", name, err))
		}
	}
}

// setOpaque marks the upper directory p opaque: the layers below do not
// show through it.
func (x *extractor) setOpaque(pfd int, name, p string) error {
	fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opaque directory %q: %w", p, err)
	}
	defer unix.Close(fd)
	if err := unix.Fsetxattr(fd, x.up.opts.opaqueXattr(), []byte("y"), 0); err != nil {
		return fmt.Errorf("opaque directory %q: %w", p, err)
	}
	x.up.hides[p] = true
	return nil
}

// upperParent opens the upper directory's parent of p, making it (copied
// up) where missing; ok is false where the way to it is not a directory
// (a symlink or a file of this layer): then nothing below it is seen.
func (x *extractor) upperParent(p string) (fd int, ok bool, err error) {
	fd, err = x.openDir(parentPath(p), true)
	switch {
	case err == nil:
		return fd, true, nil
	case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP), errors.Is(err, errSymlinkParent):
		return -1, false, nil
	}
	return -1, false, err
}

// upperWhiteout hides target of the layers below: a whiteout where they
// have it, the opaque xattr where the layer made a directory there.
func (x *extractor) upperWhiteout(target, name string) error {
	if x.layerPaths[target] {
		// The layer's own entry stays; a directory of it loses the
		// lower contents.
		return x.upperOpaqueIfDir(target, name)
	}
	if _, ok := x.lowerStat(target); !ok {
		return nil
	}
	pfd, ok, err := x.upperParent(target)
	if err != nil || !ok {
		return wrapEntry(name, "whiteout", err)
	}
	defer unix.Close(pfd)
	x.dropCacheUnder(target)
	base := path.Base(target)
	err = unix.Mknodat(pfd, base, unix.S_IFCHR, 0)
	if errors.Is(err, unix.EACCES) && x.makeWritable(parentPath(target)) {
		err = unix.Mknodat(pfd, base, unix.S_IFCHR, 0)
	}
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return wrapEntry(name, "whiteout", err)
	}
	x.up.whited[target] = true
	return nil
}

func wrapEntry(name, what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("entry %q: %s: %w", name, what, err)
}

// upperOpaqueIfDir makes p opaque if the upper directory has a directory
// there.
func (x *extractor) upperOpaqueIfDir(p, name string) error {
	pfd, ok, err := x.existingDir(parentPath(p))
	if err != nil || !ok {
		return wrapEntry(name, "opaque directory", err)
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, path.Base(p), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	return wrapEntry(name, "opaque directory", x.setOpaque(pfd, path.Base(p), p))
}

// upperOpaque hides the lower contents of the directory dirPath.
func (x *extractor) upperOpaque(dirPath, name string) error {
	if dirPath == "" {
		x.up.rootOpaque = true
		return nil
	}
	if !x.layerPaths[dirPath] {
		// A directory the layer does not list: copied up where the
		// layers below have one, else there is nothing to hide.
		if st, ok := x.lowerStat(dirPath); !ok || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return nil
		}
		fd, err := x.openDir(dirPath, true)
		if err != nil {
			if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) || errors.Is(err, errSymlinkParent) {
				return nil
			}
			return wrapEntry(name, "opaque directory", err)
		}
		unix.Close(fd)
		x.touch(dirPath)
	}
	return x.upperOpaqueIfDir(dirPath, name)
}

// finishUpperRoot hides the lower root's names for an opaque root: a
// whiteout for each the layer does not have, the opaque xattr on each
// directory it has.
func (x *extractor) finishUpperRoot() error {
	if !x.up.rootOpaque || x.up.lowerFd < 0 {
		return nil
	}
	lfd, err := unix.Openat(x.up.lowerFd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opaque root: %w", err)
	}
	names, err := readDirNames(lfd)
	unix.Close(lfd)
	if err != nil {
		return fmt.Errorf("opaque root: %w", err)
	}
	for _, n := range names {
		var st unix.Stat_t
		err := unix.Fstatat(x.root, n, &st, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case errors.Is(err, unix.ENOENT):
			if err := unix.Mknodat(x.root, n, unix.S_IFCHR, 0); err != nil {
				return fmt.Errorf("opaque root: whiteout %q: %w", n, err)
			}
		case err != nil:
			return fmt.Errorf("opaque root: %q: %w", n, err)
		case st.Mode&unix.S_IFMT == unix.S_IFDIR:
			if err := x.setOpaque(x.root, n, n); err != nil {
				return err
			}
		}
	}
	return nil
}

// copyUp copies the lower file at target (not a directory) into the upper
// directory, as the overlay does before it links to it; false when the
// layers below do not have it.
func (x *extractor) copyUp(target string) (bool, error) {
	st, ok := x.lowerStat(target)
	if !ok || st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return false, nil
	}
	pfd, ok, err := x.upperParent(target)
	if err != nil || !ok {
		return false, err
	}
	defer unix.Close(pfd)
	// A name this layer does not list: its directory is no longer empty
	// but for the layer's names.
	delete(x.fresh, parentPath(target))
	base := path.Base(target)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		err = x.copyUpFile(pfd, base, target)
	case unix.S_IFLNK:
		err = x.copyUpLink(pfd, base, target)
	default:
		err = unix.Mknodat(pfd, base, st.Mode, int(st.Rdev))
	}
	if err != nil {
		return false, fmt.Errorf("copy up %q: %w", target, err)
	}
	return true, x.copyUpMeta(pfd, base, target, &st, false)
}

func (x *extractor) copyUpFile(pfd int, base, p string) error {
	lp, err := x.lowerDir(parentPath(p))
	if err != nil {
		return err
	}
	src, err := unix.Openat(lp, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	closeIfNotRoot(lp, x.up.lowerFd)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(src), p)
	defer f.Close()
	dst, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	_, err = copyToFd(dst, f, x.buf)
	if cerr := unix.Close(dst); err == nil {
		err = cerr
	}
	return err
}

func (x *extractor) copyUpLink(pfd int, base, p string) error {
	lp, err := x.lowerDir(parentPath(p))
	if err != nil {
		return err
	}
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(lp, base, buf)
	closeIfNotRoot(lp, x.up.lowerFd)
	if err != nil {
		return err
	}
	return unix.Symlinkat(string(buf[:n]), pfd, base)
}

// copyUpTarget copies a hardlink's target up from the layers below when
// the upper directory does not have it.
func (e *entryCtx) copyUpTarget(target string) error {
	if fd, err := e.x.openDir(parentPath(target), false); err == nil {
		var st unix.Stat_t
		serr := unix.Fstatat(fd, path.Base(target), &st, unix.AT_SYMLINK_NOFOLLOW)
		unix.Close(fd)
		if serr == nil || !errors.Is(serr, unix.ENOENT) {
			return nil
		}
	} else if !errors.Is(err, unix.ENOENT) {
		return nil // the link's own checks say what is wrong
	}
	if _, err := e.x.copyUp(target); err != nil {
		return fmt.Errorf("hardlink target %q: %w", e.hdr.Linkname, err)
	}
	return nil
}
