package atomicfile

import (
	"bufio"
	"errors"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// WriteFile writes data to path with mode, atomically (see Write). The
// data goes to the file in one write, through no buffer: most of what is
// written this way is a few hundred bytes.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	return write(path, mode, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// Replace writes data to path through a temporary file (mode 0600) in its
// directory renamed over it, without fsync: a reader sees the old content
// or the new, never a part, but after a crash the file may be empty or
// missing. It is for records whose loss costs only work done again (the
// step cache's table of context digests, a base's path answers), whose
// readers take a torn or missing file as no record. path's directory must
// exist.
func Replace(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// bufSize is Write's buffer: large enough that a tar or gob stream makes
// few write calls, small enough that it costs nothing to allocate (an
// archive's file content is copied in 32 KiB chunks anyway).
const bufSize = 64 << 10

// Write creates a temporary file beside path, fills it through write (a
// buffered writer), gives it mode, fsyncs it, renames it over path and
// fsyncs the directory. On failure the temporary file is removed and path
// is untouched. path's directory must exist.
func Write(path string, mode os.FileMode, fill func(io.Writer) error) error {
	return write(path, mode, func(f *os.File) error {
		bw := bufio.NewWriterSize(f, bufSize)
		if err := fill(bw); err != nil {
			return err
		}
		return bw.Flush()
	})
}

func write(path string, mode os.FileMode, fill func(*os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		f.Close()
		if !committed {
			os.Remove(f.Name())
		}
	}()
	if err := fill(f); err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if err := Commit(f, path); err != nil {
		return err
	}
	committed = true
	return nil
}

// Commit makes f, a temporary file the caller has written in path's
// directory, path: it fsyncs f, renames it over path and fsyncs the
// directory. It leaves f open (a lock held on it lasts until the caller
// closes it) and, on failure, in place for the caller to remove.
func Commit(f *os.File, path string) error {
	if err := f.Sync(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory so that renames into it are durable. A file
// system that cannot sync a directory (EINVAL) is not an error.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}
