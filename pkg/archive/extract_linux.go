package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Extract applies one layer (an uncompressed tar stream) onto dir: OCI
// whiteouts and opaque directories (which remove what the layers below
// left in dir, never what this layer wrote), directories, regular files,
// symlinks, hardlinks (also to files that earlier layers left in dir),
// device nodes and fifos, owners (ExtractOptions.Chown), permission bits
// including setuid, setgid and sticky, extended attributes (PAX
// "SCHILY.xattr.*", security.capability included) and modification times
// (directories' after their contents).
//
// The layer is untrusted: nothing is ever written outside dir. Names that
// climb out with ".." are refused and absolute names are taken relative to
// dir. Symlinks are never followed while extracting: an entry whose parent
// is a symlink is refused, and an entry that replaces a symlink replaces
// the link itself. Hardlink targets must lie inside dir, and whiteouts of
// "." or ".." are refused. Errors name the entry.
func Extract(r io.Reader, dir string, opts ExtractOptions) error {
	x, err := newExtractor(dir, opts)
	if err != nil {
		return err
	}
	defer x.close()
	tr := tar.NewReader(r)
	for {
		hdr, err := nextHeader(tr)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("extract to %s: read tar: %w", dir, err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return fmt.Errorf("extract to %s: %w", dir, err)
		}
		if x.par != nil {
			if err := x.par.firstErr(); err != nil {
				return fmt.Errorf("extract to %s: %w", dir, err)
			}
		}
	}
	if err := x.drain(); err != nil {
		return fmt.Errorf("extract to %s: %w", dir, err)
	}
	if err := x.finish(); err != nil {
		return fmt.Errorf("extract to %s: %w", dir, err)
	}
	return nil
}

type extractor struct {
	opts     ExtractOptions
	rootPath string
	root     int // fd of dir

	// Paths this layer created, replaced or went through: whiteouts and
	// opaque markers leave them alone.
	layerPaths map[string]bool
	// Deferred directory metadata (mode, times), applied deepest first.
	dirMeta map[string]*tar.Header
	// Directories made writable to extract into them (rootless), with the
	// mode to restore.
	restore map[string]uint32

	cachePath string // the directory whose fd is cached; "" with cacheFd -1 for none
	cacheFd   int

	noOpenat2 bool
	buf       []byte

	// What a new file in the directory being written to gets without
	// fchown and fchmod (see modeByCreate, ownedByCreate).
	umask     int // -1: unknown
	uid, gid  int
	rootInfo  *dirInfo
	cacheInfo dirInfo
	cur       *dirInfo // the parent of the entry being extracted

	up *upperState // ExtractOptions.Upper; nil otherwise

	// Directories this extraction made (empty then, writable by the
	// caller): new names in them may go to the file writers.
	fresh map[string]bool
	par   *parallel // the file writers; nil for none
}

// dirInfo is what decides the owner and mode of a file created in a
// directory.
type dirInfo struct {
	gid    int  // the group new files get
	defACL bool // a default ACL (or not known not to be one)
}

func newExtractor(dir string, opts ExtractOptions) (*extractor, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("extract to %s: %w", dir, err)
	}
	fd, err := unix.Open(abs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("extract to %s: open: %w", dir, err)
	}
	var up *upperState
	if opts.Upper != nil {
		if up, err = newUpperState(opts.Upper); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("extract to %s: %w", dir, err)
		}
	}
	if opts.OnSkip != nil {
		// Called by the file writers too: one at a time.
		var mu sync.Mutex
		onSkip := opts.OnSkip
		opts.OnSkip = func(name, reason string) {
			mu.Lock()
			defer mu.Unlock()
			onSkip(name, reason)
		}
	}
	x := &extractor{
		up:         up,
		opts:       opts,
		rootPath:   abs,
		root:       fd,
		layerPaths: map[string]bool{},
		dirMeta:    map[string]*tar.Header{},
		restore:    map[string]uint32{},
		cacheFd:    -1,
		noOpenat2:  walkOnly,
		buf:        make([]byte, 128<<10),
		umask:      readUmask(),
		uid:        unix.Geteuid(),
		gid:        unix.Getegid(),
		fresh:      map[string]bool{},
	}
	if n := extractWorkers(opts.Workers); n > 0 {
		x.par = newParallel(x, n)
	}
	return x, nil
}

func (x *extractor) close() {
	if x.par != nil {
		x.par.stop()
		x.par = nil
	}
	x.dropCache()
	if x.up != nil {
		x.up.close()
	}
	if x.root >= 0 {
		unix.Close(x.root)
		x.root = -1
	}
}

func (x *extractor) dropCache() {
	if x.cacheFd >= 0 {
		unix.Close(x.cacheFd)
	}
	x.cachePath, x.cacheFd = "", -1
}

// dropCacheUnder forgets the cached directory fd if it is p or below p.
func (x *extractor) dropCacheUnder(p string) {
	if x.cacheFd >= 0 && (x.cachePath == p || isAncestor(p, x.cachePath)) {
		x.dropCache()
	}
}

// touch records that this layer created or went through p and its parents.
func (x *extractor) touch(p string) {
	for q := p; q != ""; q = parentPath(q) {
		if x.layerPaths[q] {
			return
		}
		x.layerPaths[q] = true
	}
}

func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	p, err := cleanReadName(hdr.Name)
	if err != nil {
		return err
	}
	kind, target, err := parseWhiteout(p, hdr.Name)
	if err != nil {
		return err
	}
	if kind == plainWhiteout || kind == opaqueMarker {
		// Removals: nothing handed to the file writers may be in the way.
		if err := x.drain(); err != nil {
			return err
		}
	}
	switch kind {
	case metaWhiteout:
		return nil
	case plainWhiteout:
		if x.up != nil {
			return x.upperWhiteout(target, hdr.Name)
		}
		return x.whiteout(target, hdr.Name)
	case opaqueMarker:
		if x.up != nil {
			return x.upperOpaque(target, hdr.Name)
		}
		return x.opaque(target, hdr.Name)
	}

	typ, ok := fileType(hdr.Typeflag)
	if !ok {
		x.opts.skip(hdr.Name, fmt.Sprintf("unsupported entry type %q", string(typ)))
		return nil
	}
	if p == "" {
		if typ != tar.TypeDir {
			return fmt.Errorf("entry %q: the root can only be a directory", hdr.Name)
		}
		if x.opts.Chown {
			if err := unix.Fchown(x.root, hdr.Uid, hdr.Gid); err != nil {
				return fmt.Errorf("entry %q: chown %d:%d: %w", hdr.Name, hdr.Uid, hdr.Gid, err)
			}
		}
		h := *hdr
		x.dirMeta[""] = &h
		return nil
	}
	seen := x.layerPaths[p]
	if err := x.waitFor(p); err != nil {
		return err
	}
	x.touch(p)
	dir := parentPath(p)
	pfd, err := x.dirFd(dir, hdr.Name)
	if err != nil {
		return err
	}
	e := &entryCtx{x: x, hdr: hdr, path: p, dir: dir, base: path.Base(p), pfd: pfd}
	switch typ {
	case tar.TypeDir:
		err = e.mkdir()
	case tar.TypeReg:
		if e.parallelOK(seen) {
			return e.queueFile(r)
		}
		err = e.writeFile(r)
	case tar.TypeSymlink:
		err = e.symlink()
	case tar.TypeLink:
		err = e.hardlink()
	default:
		err = e.mknod(typ)
	}
	if err != nil {
		return fmt.Errorf("entry %q: %w", hdr.Name, err)
	}
	return nil
}

// entryCtx is one entry being extracted into its parent directory pfd.
type entryCtx struct {
	x    *extractor
	hdr  *tar.Header
	path string // clean relative path
	dir  string // parent's clean relative path
	base string
	pfd  int
}

// retry runs op, and once more after making the parent writable if op was
// refused for lack of permission (a read-only directory owned by the
// caller, as rootless extraction meets them).
func (e *entryCtx) retry(op func() error) error {
	err := op()
	if errors.Is(err, unix.EACCES) && e.x.makeWritable(e.dir) {
		err = op()
	}
	return err
}

// clear removes what is at the entry's path so that it can be created
// anew; with keepDir an existing directory stays (it is merged into) and
// clear reports true.
func (e *entryCtx) clear(keepDir bool) (bool, error) {
	var st unix.Stat_t
	err := unix.Fstatat(e.pfd, e.base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat: %w", err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if keepDir {
			return true, nil
		}
		// Files handed to the writers may be in that tree.
		if err := e.x.drain(); err != nil {
			return false, err
		}
		e.x.dropCacheUnder(e.path)
		if err := e.retry(func() error { return e.x.removeAll(e.pfd, e.base, e.path) }); err != nil {
			return false, fmt.Errorf("replace directory: %w", err)
		}
		return false, nil
	}
	if err := e.retry(func() error { return unix.Unlinkat(e.pfd, e.base, 0) }); err != nil && !errors.Is(err, unix.ENOENT) {
		return false, fmt.Errorf("replace existing entry: %w", err)
	}
	return false, nil
}

func (e *entryCtx) mkdir() error {
	exists, err := e.clear(true)
	if err != nil {
		return err
	}
	if !exists {
		if err := e.retry(func() error { return unix.Mkdirat(e.pfd, e.base, 0o700) }); err != nil {
			return fmt.Errorf("mkdir: %w", err)
		}
		e.x.fresh[e.path] = true
		if up := e.x.up; up != nil && up.whited[e.path] {
			// In place of a whiteout of this layer: the lower
			// directory is gone.
			delete(up.whited, e.path)
			if err := e.x.setOpaque(e.pfd, e.base, e.path); err != nil {
				return err
			}
		}
	}
	if exists && hasXattrs(e.hdr) {
		// A default ACL would change the mode of files handed to the
		// writers but not created yet.
		if err := e.x.drain(); err != nil {
			return err
		}
	}
	if e.x.opts.Chown || hasXattrs(e.hdr) {
		fd, err := unix.Openat(e.pfd, e.base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open directory: %w", err)
		}
		defer unix.Close(fd)
		if e.x.opts.Chown {
			if err := unix.Fchown(fd, e.hdr.Uid, e.hdr.Gid); err != nil {
				return fmt.Errorf("chown %d:%d: %w", e.hdr.Uid, e.hdr.Gid, err)
			}
		}
		e.setXattrs(func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) })
	}
	h := *e.hdr
	e.x.dirMeta[e.path] = &h
	return nil
}

func (e *entryCtx) writeFile(r io.Reader) error {
	mode := uint32(e.hdr.Mode & 0o7777)
	exact := e.x.modeByCreate(mode)
	perm := uint32(0o600)
	if exact {
		perm = mode
	}
	// Create first, and clear the way only when something is there: a
	// layer mostly writes new names.
	var fd int
	create := func() error {
		var err error
		fd, err = unix.Openat(e.pfd, e.base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
		return err
	}
	err := e.retry(create)
	if errors.Is(err, unix.EEXIST) {
		if _, err := e.clear(false); err != nil {
			return err
		}
		err = e.retry(create)
	}
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	err = e.fillFile(fd, r, mode, exact)
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	if err != nil {
		return err
	}
	return e.setTimes()
}

// fillFile writes a new file's content and applies its owner, mode and
// xattrs; exact says it was created with mode.
func (e *entryCtx) fillFile(fd int, r io.Reader, mode uint32, exact bool) error {
	var n int64
	var err error
	if isSparse(e.hdr) {
		n, err = copySparse(fd, r, e.x.buf)
	} else {
		n, err = copyToFd(fd, r, e.x.buf)
	}
	if err != nil {
		return fmt.Errorf("write content: %w", err)
	}
	if n != e.hdr.Size {
		return fmt.Errorf("content is %d bytes, header says %d", n, e.hdr.Size)
	}
	e.x.startWriteBack(fd, int(n))
	if e.x.opts.Chown && !e.x.ownedByCreate(e.hdr) {
		if err := unix.Fchown(fd, e.hdr.Uid, e.hdr.Gid); err != nil {
			return fmt.Errorf("chown %d:%d: %w", e.hdr.Uid, e.hdr.Gid, err)
		}
		exact = false // chown may clear setuid and setgid: set the mode again
	}
	if !exact {
		if err := unix.Fchmod(fd, mode); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	e.setXattrs(func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) })
	return nil
}

// copyToFd copies r to the file fd with plain writes (no *os.File, whose
// set-up costs system calls per file).
func copyToFd(fd int, r io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		m, rerr := r.Read(buf)
		if m > 0 {
			if err := writeAll(fd, buf[:m]); err != nil {
				return n, err
			}
			n += int64(m)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// writeAll writes b to fd.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		w, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[w:]
	}
	return nil
}

// copySparse copies r to the file fd leaving holes where r has whole
// blocks of zeros, so that a sparse entry does not take its logical size
// on disk.
func copySparse(fd int, r io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		m, err := io.ReadFull(r, buf)
		if m > 0 {
			chunk := buf[:m]
			if allZero(chunk) {
				if _, serr := unix.Seek(fd, int64(m), io.SeekCurrent); serr != nil {
					return n, serr
				}
			} else if werr := writeAll(fd, chunk); werr != nil {
				return n, werr
			}
			n += int64(m)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return n, unix.Ftruncate(fd, n)
		}
		if err != nil {
			return n, err
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func (e *entryCtx) symlink() error {
	if e.hdr.Linkname == "" {
		return errors.New("symlink without target")
	}
	if _, err := e.clear(false); err != nil {
		return err
	}
	if err := e.retry(func() error { return unix.Symlinkat(e.hdr.Linkname, e.pfd, e.base) }); err != nil {
		return fmt.Errorf("symlink: %w", err)
	}
	if e.x.opts.Chown {
		if err := unix.Fchownat(e.pfd, e.base, e.hdr.Uid, e.hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("lchown %d:%d: %w", e.hdr.Uid, e.hdr.Gid, err)
		}
	}
	e.setXattrsByPath()
	return e.setTimes()
}

func (e *entryCtx) hardlink() error {
	target, err := cleanReadName(e.hdr.Linkname)
	if err != nil || target == "" {
		return fmt.Errorf("hardlink target %q is outside the root", e.hdr.Linkname)
	}
	if err := e.x.waitFor(target); err != nil {
		return err
	}
	if target == e.path {
		var st unix.Stat_t
		if err := unix.Fstatat(e.pfd, e.base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("hardlink to itself: %w", err)
		}
		return nil
	}
	if e.x.up != nil {
		if err := e.copyUpTarget(target); err != nil {
			return err
		}
	}
	tfd, err := e.x.openDir(parentPath(target), false)
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("hardlink target %q does not exist", e.hdr.Linkname)
	}
	if err != nil {
		return fmt.Errorf("hardlink target %q: %w", e.hdr.Linkname, err)
	}
	defer unix.Close(tfd)
	tbase := path.Base(target)
	var st unix.Stat_t
	if err := unix.Fstatat(tfd, tbase, &st, unix.AT_SYMLINK_NOFOLLOW); errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("hardlink target %q does not exist", e.hdr.Linkname)
	} else if err != nil {
		return fmt.Errorf("hardlink target %q: %w", e.hdr.Linkname, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("hardlink target %q is a directory", e.hdr.Linkname)
	}
	if _, err := e.clear(false); err != nil {
		return err
	}
	if err := e.retry(func() error { return unix.Linkat(tfd, tbase, e.pfd, e.base, 0) }); err != nil {
		return fmt.Errorf("hardlink to %q: %w", e.hdr.Linkname, err)
	}
	return nil
}

func (e *entryCtx) mknod(typ byte) error {
	mode := uint32(e.hdr.Mode & 0o7777)
	switch typ {
	case tar.TypeChar:
		mode |= unix.S_IFCHR
	case tar.TypeBlock:
		mode |= unix.S_IFBLK
	default:
		mode |= unix.S_IFIFO
	}
	if _, err := e.clear(false); err != nil {
		return err
	}
	dev := unix.Mkdev(uint32(e.hdr.Devmajor), uint32(e.hdr.Devminor))
	err := e.retry(func() error { return unix.Mknodat(e.pfd, e.base, mode, int(dev)) })
	if errors.Is(err, unix.EPERM) {
		e.x.opts.skip(e.hdr.Name, fmt.Sprintf("mknod not permitted: %v", err))
		return nil
	}
	if err != nil {
		return fmt.Errorf("mknod: %w", err)
	}
	if e.x.opts.Chown {
		if err := unix.Fchownat(e.pfd, e.base, e.hdr.Uid, e.hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %d:%d: %w", e.hdr.Uid, e.hdr.Gid, err)
		}
	}
	// The node was just created by us, it is not a symlink: fchmodat's
	// following of symlinks does not matter. Explicit because of umask.
	if err := unix.Fchmodat(e.pfd, e.base, mode&0o7777, 0); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	e.setXattrsByPath()
	return e.setTimes()
}

func hasXattrs(h *tar.Header) bool {
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, xattrPAXPrefix) {
			return true
		}
	}
	return false
}

// setXattrs sets the entry's extended attributes with set, in name order;
// what cannot be set is reported to OnSkip.
func (e *entryCtx) setXattrs(set func(k string, v []byte) error) {
	var keys []string
	for k := range e.hdr.PAXRecords {
		if strings.HasPrefix(k, xattrPAXPrefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		name := strings.TrimPrefix(k, xattrPAXPrefix)
		if err := set(name, []byte(e.hdr.PAXRecords[k])); err != nil {
			e.x.opts.skip(e.hdr.Name, fmt.Sprintf("xattr %s: %v", name, err))
		}
	}
}

// setXattrsByPath sets xattrs of an entry that cannot be opened (symlink,
// device, fifo). The parents were checked to be real directories.
func (e *entryCtx) setXattrsByPath() {
	if !hasXattrs(e.hdr) {
		return
	}
	full := filepath.Join(e.x.rootPath, e.path)
	e.setXattrs(func(k string, v []byte) error { return unix.Lsetxattr(full, k, v, 0) })
}

func timespec(t time.Time) unix.Timespec {
	if t.IsZero() {
		return unix.Timespec{}
	}
	ts, err := unix.TimeToTimespec(t)
	if err != nil {
		return unix.Timespec{}
	}
	return ts
}

func headerTimes(h *tar.Header) []unix.Timespec {
	mtime := timespec(h.ModTime)
	atime := mtime
	if !h.AccessTime.IsZero() {
		atime = timespec(h.AccessTime)
	}
	return []unix.Timespec{atime, mtime}
}

func (e *entryCtx) setTimes() error {
	if err := unix.UtimesNanoAt(e.pfd, e.base, headerTimes(e.hdr), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// whiteout removes target, as the layers below left it, from dir.
func (x *extractor) whiteout(target, name string) error {
	pfd, ok, err := x.existingDir(parentPath(target))
	if err != nil {
		return fmt.Errorf("entry %q: whiteout: %w", name, err)
	}
	if !ok {
		return nil
	}
	defer unix.Close(pfd)
	x.dropCacheUnder(target)
	if err := x.removeLower(pfd, path.Base(target), target); err != nil {
		return fmt.Errorf("entry %q: whiteout: %w", name, err)
	}
	return nil
}

// opaque removes what the layers below left in the directory dirPath.
func (x *extractor) opaque(dirPath, name string) error {
	dfd, ok, err := x.existingDir(dirPath)
	if err != nil {
		return fmt.Errorf("entry %q: opaque directory: %w", name, err)
	}
	if !ok {
		return nil
	}
	defer unix.Close(dfd)
	x.dropCacheUnder(dirPath)
	names, err := readDirNames(dfd)
	if err != nil {
		return fmt.Errorf("entry %q: opaque directory: %w", name, err)
	}
	for _, n := range names {
		if err := x.removeLower(dfd, n, joinPath(dirPath, n)); err != nil {
			return fmt.Errorf("entry %q: opaque directory: %w", name, err)
		}
	}
	return nil
}

// existingDir opens the directory p if it exists as a real directory
// (reached without symlinks); ok is false otherwise.
func (x *extractor) existingDir(p string) (fd int, ok bool, err error) {
	fd, err = x.openDir(p, false)
	switch {
	case err == nil:
		return fd, true, nil
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP), errors.Is(err, errSymlinkParent):
		return -1, false, nil
	}
	return -1, false, err
}

// removeLower removes name (at clean path p) from the directory dfd unless
// this layer wrote it; of a directory this layer went through, it removes
// the lower contents.
func (x *extractor) removeLower(dfd int, name, p string) error {
	if !x.layerPaths[p] {
		err := x.removeAll(dfd, name, p)
		if errors.Is(err, unix.EACCES) && x.makeWritable(parentPath(p)) {
			err = x.removeAll(dfd, name, p)
		}
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	cfd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %q: %w", p, err)
	}
	defer unix.Close(cfd)
	names, err := readDirNames(cfd)
	if err != nil {
		return fmt.Errorf("read %q: %w", p, err)
	}
	for _, n := range names {
		if err := x.removeLower(cfd, n, joinPath(p, n)); err != nil {
			return err
		}
	}
	return nil
}

// readDirNames lists a directory given by fd (which stays open).
func readDirNames(fd int) ([]string, error) {
	dup, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), ".")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	slices.Sort(names)
	return names, err
}

// removeAll removes name from the directory dfd, recursively, following
// no symlinks. p is its clean path, for errors.
func (x *extractor) removeAll(dfd int, name, p string) error {
	err := unix.Unlinkat(dfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("remove %q: %w", p, err)
	}
	cfd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EACCES) {
		// A directory without read permission, owned by us: open it up.
		if unix.Fchmodat(dfd, name, 0o700, 0) == nil {
			cfd, err = unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
	}
	if err != nil {
		return fmt.Errorf("remove %q: %w", p, err)
	}
	defer unix.Close(cfd)
	names, err := readDirNames(cfd)
	if err != nil {
		return fmt.Errorf("remove %q: %w", p, err)
	}
	madeWritable := false
	for _, n := range names {
		err := x.removeAll(cfd, n, joinPath(p, n))
		if errors.Is(err, unix.EACCES) && !madeWritable {
			madeWritable = true
			if unix.Fchmod(cfd, 0o700) == nil {
				err = x.removeAll(cfd, n, joinPath(p, n))
			}
		}
		if err != nil {
			return err
		}
	}
	if err := unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %q: %w", p, err)
	}
	return nil
}

// makeWritable gives the owner full access to the directory p (rootless
// extraction into a read-only directory the caller owns) and remembers its
// mode to restore it. It reports whether anything changed.
func (x *extractor) makeWritable(p string) bool {
	var st unix.Stat_t
	name := p
	if name == "" {
		name = "."
	}
	if err := unix.Fstatat(x.root, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Mode&0o700 == 0o700 {
		return false
	}
	if err := unix.Fchmodat(x.root, name, st.Mode&0o7777|0o700, 0); err != nil {
		return false
	}
	if _, ok := x.restore[p]; !ok {
		x.restore[p] = st.Mode & 0o7777
	}
	return true
}

// walkOnly makes extractors skip openat2 and walk directories one
// component at a time, as they do where openat2 is unavailable (tests).
var walkOnly = false

// errSymlinkParent marks an entry whose parent directory is a symlink.
var errSymlinkParent = errors.New("is a symlink; refusing to write through it")

// dirFd returns an fd of the directory at the clean relative path p,
// creating missing directories (mode 0755) on the way. It is cached: the
// caller must not close it.
func (x *extractor) dirFd(p, entry string) (int, error) {
	if p == "" {
		if x.rootInfo == nil {
			i := x.readDirInfo(x.root)
			x.rootInfo = &i
		}
		x.cur = x.rootInfo
		return x.root, nil
	}
	if x.cacheFd >= 0 && x.cachePath == p {
		x.cur = &x.cacheInfo
		return x.cacheFd, nil
	}
	if err := x.waitForAncestors(p); err != nil {
		return -1, err
	}
	fd, err := x.openDir(p, true)
	if err != nil {
		return -1, fmt.Errorf("entry %q: %w", entry, err)
	}
	x.dropCache()
	x.cachePath, x.cacheFd = p, fd
	x.cacheInfo = x.readDirInfo(fd)
	x.cur = &x.cacheInfo
	return fd, nil
}

// readDirInfo looks at the directory fd (an O_PATH fd will do).
func (x *extractor) readDirInfo(fd int) dirInfo {
	i := dirInfo{gid: x.gid, defACL: true}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		i.gid = -1
		return i
	}
	if st.Mode&unix.S_ISGID != 0 {
		i.gid = int(st.Gid)
	}
	_, err := unix.Getxattr("/proc/self/fd/"+strconv.Itoa(fd), "system.posix_acl_default", nil)
	i.defACL = !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.EOPNOTSUPP)
	return i
}

// modeByCreate reports whether a file created with mode in the current
// directory has exactly mode: only permission bits, none of which the
// umask takes away, and no default ACL to change them.
func (x *extractor) modeByCreate(mode uint32) bool {
	return x.cur != nil && !x.cur.defACL && x.umask >= 0 && mode&^0o777 == 0 && mode&uint32(x.umask) == 0
}

// ownedByCreate reports whether a file created in the current directory
// already has the owner h asks for.
func (x *extractor) ownedByCreate(h *tar.Header) bool {
	return x.cur != nil && h.Uid == x.uid && h.Gid == x.cur.gid
}

// readUmask returns the process's umask (from /proc, which does not
// change it), or -1.
func readUmask() int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil {
				return -1
			}
			return int(m)
		}
	}
	return -1
}

// openDir opens the directory at the clean relative path p, refusing to go
// through symlinks; with create, missing directories are made. The caller
// closes the fd.
func (x *extractor) openDir(p string, create bool) (int, error) {
	if p == "" {
		fd, err := unix.Openat(x.root, ".", dirOpenFlags, 0)
		if err != nil {
			return -1, fmt.Errorf("open root: %w", err)
		}
		return fd, nil
	}
	if !x.noOpenat2 {
		fd, err := unix.Openat2(x.root, p, &unix.OpenHow{
			Flags:   uint64(dirOpenFlags),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
		})
		switch {
		case err == nil:
			return fd, nil
		case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EPERM), errors.Is(err, unix.EINVAL), errors.Is(err, unix.E2BIG):
			// No openat2 here (old kernel or a seccomp filter): walk.
			x.noOpenat2 = true
		case errors.Is(err, unix.EXDEV):
			// Something is mounted inside dir: the walk handles it.
		case !create && errors.Is(err, unix.ENOENT):
			return -1, fmt.Errorf("directory %q: %w", p, err)
		}
		// Otherwise (missing, a symlink or a non-directory on the way),
		// the walk creates what is missing or says what is wrong.
	}
	return x.walkDir(p, create)
}

// walkDir opens p one component at a time with O_NOFOLLOW.
func (x *extractor) walkDir(p string, create bool) (int, error) {
	cur := x.root
	done := ""
	closeCur := func() {
		if cur != x.root {
			unix.Close(cur)
		}
	}
	for _, c := range strings.Split(p, "/") {
		parent := done
		done = joinPath(done, c)
		fd, err := unix.Openat(cur, c, dirOpenFlags, 0)
		if x.up != nil && create && errors.Is(err, unix.ENOTDIR) && x.up.whited[done] {
			// A whiteout of this layer: a directory in its place
			// hides the lower one.
			if err = unix.Unlinkat(cur, c, 0); err == nil {
				delete(x.up.whited, done)
				if err = x.plainMkdir(cur, c, parent); err == nil {
					err = x.setOpaque(cur, c, done)
				}
			}
			if err != nil {
				closeCur()
				return -1, fmt.Errorf("create directory %q: %w", done, err)
			}
			fd, err = unix.Openat(cur, c, dirOpenFlags, 0)
		}
		if errors.Is(err, unix.ENOENT) && create {
			if x.up != nil {
				err = x.upperMkdir(cur, c, done)
			} else {
				err = x.plainMkdir(cur, c, parent)
			}
			if err != nil && !errors.Is(err, unix.EEXIST) {
				closeCur()
				if errors.Is(err, errSymlinkParent) || errors.Is(err, unix.ENOTDIR) {
					return -1, err
				}
				return -1, fmt.Errorf("create directory %q: %w", done, err)
			}
			fd, err = unix.Openat(cur, c, dirOpenFlags, 0)
		}
		if err != nil {
			var st unix.Stat_t
			if serr := unix.Fstatat(cur, c, &st, unix.AT_SYMLINK_NOFOLLOW); serr == nil {
				switch st.Mode & unix.S_IFMT {
				case unix.S_IFLNK:
					err = fmt.Errorf("%q %w", done, errSymlinkParent)
				case unix.S_IFDIR:
					err = fmt.Errorf("directory %q: %w", done, err)
				default:
					err = fmt.Errorf("%q is not a directory: %w", done, unix.ENOTDIR)
				}
			} else {
				err = fmt.Errorf("directory %q: %w", done, err)
			}
			closeCur()
			return -1, err
		}
		closeCur()
		cur = fd
	}
	return cur, nil
}

// finish applies the deferred directory metadata, deepest first, and gives
// directories made writable their modes back.
func (x *extractor) finish() error {
	x.dropCache()
	if x.up != nil {
		if err := x.finishUpperRoot(); err != nil {
			return err
		}
	}
	paths := make([]string, 0, len(x.dirMeta)+len(x.restore))
	for p := range x.dirMeta {
		paths = append(paths, p)
	}
	for p := range x.restore {
		if _, ok := x.dirMeta[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.SortFunc(paths, func(a, b string) int {
		if d := strings.Count(b, "/") - strings.Count(a, "/"); d != 0 && a != "" && b != "" {
			return d
		}
		switch {
		case a == "" && b != "":
			return 1
		case b == "" && a != "":
			return -1
		}
		return strings.Compare(a, b)
	})
	for _, p := range paths {
		pfd, ok, err := x.existingDir(parentPath(p))
		if err != nil {
			return fmt.Errorf("directory %q: %w", p, err)
		}
		if !ok {
			continue
		}
		name := path.Base(p)
		if p == "" {
			name = "."
		}
		err = x.finishDir(pfd, name, p)
		unix.Close(pfd)
		if err != nil {
			return fmt.Errorf("directory %q: %w", p, err)
		}
	}
	return nil
}

func (x *extractor) finishDir(pfd int, name, p string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil // replaced by a non-directory later in the layer
	}
	h, ok := x.dirMeta[p]
	mode := x.restore[p]
	if ok {
		mode = uint32(h.Mode & 0o7777)
	}
	// name is a directory, not a symlink: fchmodat's following is moot.
	if err := unix.Fchmodat(pfd, name, mode, 0); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if ok {
		if err := unix.UtimesNanoAt(pfd, name, headerTimes(h), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("set times: %w", err)
		}
	}
	return nil
}

// dirOpenFlags opens directories for use as the dirfd of *at calls,
// without needing read permission and without following a final symlink.
const dirOpenFlags = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// SyncFS writes everything of dir's filesystem that is still in memory to
// disk and waits for it (syncfs): once per extracted layer, before it is
// published, instead of a fsync per file.
func SyncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
