package rootfs

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// EntryWriter takes a layer's tar entries: *tar.Writer and the archive
// package's normalising TarWriter both are one.
type EntryWriter interface {
	WriteHeader(h *tar.Header) error
	io.Writer
}

// WriteUpperDiff writes the overlay upper directory upper as an OCI layer
// tar to tw: whiteouts (0/0 character devices) become ".wh.NAME" entries,
// opaque directories get a ".wh..wh..opq" entry, files with several links
// in upper become hardlinks, and overlay's own xattrs are left out. Paths
// in exclude (relative to the root) are left out with everything below
// them. Entries are sorted, parents first; owners are as the caller sees
// them (run it inside the user namespace the files were made in).
//
// It costs what the step wrote: directory entries come with their types,
// so each file is opened once, relative to its directory (no path walk
// from the root per system call), and its metadata, extended attributes
// and content are all read through that one descriptor, ahead of the tar
// writer on other threads (see prefetchWorkers).
func WriteUpperDiff(upper string, exclude []string, tw EntryWriter) (DiffStats, error) {
	d := newDiffer(upper, tw, exclude)
	fd, err := unix.Open(upper, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return d.stats, &os.PathError{Op: "open", Path: upper, Err: err}
	}
	defer unix.Close(fd)
	d.files = make(chan *fileRead, prefetchWindow)
	var wg sync.WaitGroup
	for range prefetchWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range d.files {
				f.read()
			}
		}()
	}
	err = d.upperDir(fd, "")
	close(d.files)
	wg.Wait()
	return d.stats, err
}

// Regular files are opened and read ahead of the tar writer, on
// prefetchWorkers goroutines, up to prefetchWindow entries of a directory
// ahead (never past a subdirectory not yet written: at most one window is
// in flight, at most prefetchWindow*prefetchSize bytes held); content up
// to prefetchSize bytes is read then, larger files stream from their
// descriptor when their turn comes.
const (
	prefetchWorkers = 2
	prefetchWindow  = 64
	prefetchSize    = 32 << 10
)

// fileRead is a regular file read ahead.
type fileRead struct {
	dirfd int
	name  string
	done  chan struct{}
	// What read found: fd is open (to be closed by the taker) unless
	// data holds the whole content.
	fd   int
	st   unix.Stat_t
	xa   xattrInfo
	data []byte
	err  error
}

func (f *fileRead) read() {
	defer close(f.done)
	f.fd, f.err = openEntry(f.dirfd, f.name, 0, &f.st)
	if f.err != nil {
		return
	}
	if f.xa, f.err = readXattrs(fdXattrs(f.fd)); f.err != nil {
		return
	}
	if f.st.Size == 0 || f.st.Size > prefetchSize {
		return
	}
	buf := make([]byte, f.st.Size)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(f.fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			f.err = err
			return
		}
		if m == 0 {
			break // shorter than its stat said: the taker reports it
		}
		n += m
	}
	f.data = buf[:n]
	unix.Close(f.fd)
	f.fd = -1
}

// take waits for f and owns its descriptor from then on.
func (f *fileRead) take() *fileRead {
	<-f.done
	return f
}

// discard waits for f and closes what it left open.
func (f *fileRead) discard() {
	<-f.done
	if f.fd >= 0 {
		unix.Close(f.fd)
	}
}

// upperDir writes the entries of the directory fd (at rel) and, depth
// first, of its subdirectories.
func (d *differ) upperDir(fd int, rel string) error {
	ents, err := readDirFd(fd, filepath.Join(d.root, rel))
	if err != nil {
		return err
	}
	var keep []fs.DirEntry
	for _, e := range ents {
		if !d.exclude[joinRel(rel, e.Name())] {
			keep = append(keep, e)
		}
	}
	// Regular files are read ahead; every one sent is taken or
	// discarded before the directory's descriptor is closed.
	ahead := make([]*fileRead, len(keep))
	sent := 0
	defer func() {
		for _, f := range ahead {
			if f != nil {
				f.discard()
			}
		}
	}()
	for i, e := range keep {
		// Files past a subdirectory are read ahead once it is done:
		// at most one window is ever in flight.
		for sent < len(keep) && sent < i+prefetchWindow {
			t := keep[sent].Type()
			if t.IsDir() && sent > i {
				break
			}
			if t&fs.ModeType == 0 {
				ahead[sent] = &fileRead{dirfd: fd, name: keep[sent].Name(), done: make(chan struct{}), fd: -1}
				d.files <- ahead[sent]
			}
			sent++
			if t.IsDir() {
				break
			}
		}
		var err error
		if f := ahead[i]; f != nil {
			ahead[i] = nil
			err = d.upperFile(rel, f.take())
		} else {
			err = d.upperEntry(fd, rel, e.Name(), e.Type())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// upperFile writes the regular file f read ahead.
func (d *differ) upperFile(dir string, f *fileRead) error {
	rel := joinRel(dir, f.name)
	if f.fd >= 0 {
		defer unix.Close(f.fd)
	}
	if f.err != nil {
		return fmt.Errorf("%s: %w", rel, f.err)
	}
	if f.xa.whiteout && f.st.Size == 0 {
		return d.whiteout(joinRel(dir, whiteoutPrefix+f.name))
	}
	if f.xa.unsupported != "" {
		return fmt.Errorf("%s: overlay %s is not supported in a layer", rel, f.xa.unsupported)
	}
	h, err := d.header(rel, &f.st, f.xa.keep, nil)
	if err != nil {
		return err
	}
	if err := d.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	d.stats.Entries++
	switch {
	case h.Typeflag != tar.TypeReg || h.Size == 0:
		return nil
	case f.fd >= 0:
		return d.content(rel, f.fd, h.Size)
	}
	if _, err := d.tw.Write(f.data); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	if int64(len(f.data)) != h.Size {
		return fmt.Errorf("%s: changed while being read (%d bytes of %d)", rel, len(f.data), h.Size)
	}
	d.stats.Bytes += h.Size
	return nil
}

// readDirFd lists the directory fd, sorted by name, with the entries'
// types (lstat only where the filesystem does not say).
func readDirFd(fd int, name string) ([]fs.DirEntry, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "dup", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(dup), name)
	ents, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return ents, nil
}

// upperEntry writes one entry of the directory dirfd (at dir). typ is
// the type its directory entry gave.
func (d *differ) upperEntry(dirfd int, dir, name string, typ fs.FileMode) error {
	rel := joinRel(dir, name)
	var st unix.Stat_t
	fd, err := openEntry(dirfd, name, typ, &st)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	if fd >= 0 {
		defer unix.Close(fd)
	}
	if isWhiteout(&st) {
		return d.whiteout(joinRel(dir, whiteoutPrefix+name))
	}
	src := pathXattrs(filepath.Join(d.root, rel))
	if fd >= 0 {
		src = fdXattrs(fd)
	}
	xa, err := readXattrs(src)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	if xa.whiteout && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == 0 {
		return d.whiteout(joinRel(dir, whiteoutPrefix+name))
	}
	if xa.unsupported != "" {
		return fmt.Errorf("%s: overlay %s is not supported in a layer", rel, xa.unsupported)
	}
	h, err := d.header(rel, &st, xa.keep, func() (string, error) { return readlinkat(dirfd, name) })
	if err != nil || h == nil {
		return err
	}
	if err := d.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	d.stats.Entries++
	switch {
	case h.Typeflag == tar.TypeDir:
		if xa.opaque {
			if err := d.whiteout(joinRel(rel, opaqueMarker)); err != nil {
				return err
			}
		}
		return d.upperDir(fd, rel)
	case h.Typeflag == tar.TypeReg && h.Size > 0:
		return d.content(rel, fd, h.Size)
	}
	return nil
}

// openEntry reads the metadata of name in dirfd into st. A regular file
// or a directory is opened (never through a symlink) and its descriptor
// returned, to be closed by the caller; anything else gives -1.
func openEntry(dirfd int, name string, typ fs.FileMode, st *unix.Stat_t) (int, error) {
	if typ&fs.ModeType != 0 && !typ.IsDir() {
		return -1, unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
	}
	flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK
	want := uint32(unix.S_IFREG)
	if typ.IsDir() {
		flags |= unix.O_DIRECTORY
		want = unix.S_IFDIR
	}
	fd, err := unix.Openat(dirfd, name, flags|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) { // O_NOATIME on a file of another owner
		fd, err = unix.Openat(dirfd, name, flags, 0)
	}
	if err != nil {
		return -1, err
	}
	if err := unix.Fstat(fd, st); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if st.Mode&unix.S_IFMT != want {
		unix.Close(fd)
		return -1, errors.New("changed while being read")
	}
	return fd, nil
}

// readlinkat is a symlink's target.
func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// content copies the size bytes of the regular file fd into the layer.
func (d *differ) content(rel string, fd int, size int64) error {
	n, err := copyFromFd(d.tw, fd, size, d.buf)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	if n != size {
		return fmt.Errorf("%s: changed while being read (%d bytes of %d)", rel, n, size)
	}
	d.stats.Bytes += n
	return nil
}
