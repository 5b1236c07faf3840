package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/pkg/atomicfile"
	"github.com/kiln-build/kiln/pkg/oci"
)

// Names inside a store root.
const (
	layoutFile    = "oci-layout"
	indexFile     = "index.json"
	indexTempFile = "index.json.tmp"
	lockFileName  = "lock"
	tmpDirName    = "tmp"
	blobsDirName  = "blobs"
	tempPrefix    = "kiln-"
)

// Store is a local content store laid out as an OCI image layout:
//
//	root/oci-layout          {"imageLayoutVersion":"1.0.0"}
//	root/index.json          refs: manifests annotated with oci.AnnotationRefName
//	root/blobs/sha256/<hex>  verified, immutable blobs
//	root/tmp/                temp files of writers in progress
//	root/lock                flock target for index.json updates and GC
//
// A Store is safe for concurrent use by many goroutines and by many
// processes sharing the same root.
type Store struct {
	root     string
	blobDir  string // root/blobs/sha256
	tmpDir   string // root/tmp: where BlobWriter temp files live
	lockPath string // root/lock: flock target for refs and GC

	ids sync.Map // manifest digest -> config digest (content never changes)

	fetcher Fetcher // reads layers known only by their source (source.go); set by Open
}

// Open opens the store at root, creating the OCI image layout (oci-layout,
// index.json, blobs/sha256), tmp/ and the lock file when missing. It removes
// temp files left by writers that are no longer running; files of live
// writers (which hold an flock on them) are left alone.
func Open(root string, opts ...Option) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("store root %s: %w", root, err)
	}
	s := &Store{
		root:     abs,
		blobDir:  filepath.Join(abs, blobsDirName, "sha256"),
		tmpDir:   filepath.Join(abs, tmpDirName),
		lockPath: filepath.Join(abs, lockFileName),
	}
	for _, o := range opts {
		o(s)
	}
	if err := privateRoot(abs); err != nil {
		return nil, fmt.Errorf("opening store %s: %w", abs, err)
	}
	for _, d := range []string{s.blobDir, s.tmpDir} {
		if err := os.MkdirAll(d, s.dirMode()); err != nil {
			return nil, fmt.Errorf("opening store %s: %w", abs, err)
		}
	}
	f, err := os.OpenFile(s.lockPath, os.O_RDONLY|os.O_CREATE, s.fileMode())
	if err != nil {
		return nil, fmt.Errorf("opening store %s: creating lock file: %w", abs, err)
	}
	f.Close()
	if err := s.initLayout(); err != nil {
		return nil, err
	}
	if err := s.cleanStaleTemps(); err != nil {
		return nil, err
	}
	return s, nil
}

// Root returns the absolute path of the store.
func (s *Store) Root() string { return s.root }

func (s *Store) indexPath() string { return filepath.Join(s.root, indexFile) }

// initLayout creates or checks oci-layout and index.json.
func (s *Store) initLayout() error {
	lp := filepath.Join(s.root, layoutFile)
	data, err := os.ReadFile(lp)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		b, _ := oci.MarshalJSON(oci.ImageLayout{Version: oci.LayoutVersion})
		if err := s.writeFileAtomic(lp, b); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("reading %s: %w", lp, err)
	default:
		if err := oci.CheckLayout(lp, data); err != nil {
			return err
		}
	}

	if _, err := os.Stat(s.indexPath()); err == nil {
		_, err := s.readIndex()
		return err
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("opening store %s: %w", s.root, err)
	}
	lk, err := lockFile(s.lockPath, unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer lk.unlock()
	if _, err := os.Stat(s.indexPath()); err == nil {
		return nil // created by someone else meanwhile
	}
	return s.writeIndexLocked(&v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}})
}

// writeFileAtomic writes data to a locked temp file (see createTemp),
// fsyncs it and renames it over path.
func (s *Store) writeFileAtomic(path string, data []byte) error {
	f, err := s.createTemp()
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer f.Close() // after the rename: the lock keeps cleaners away
	fail := func(err error) error {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(s.fileMode()); err != nil {
		return fail(err)
	}
	if err := atomicfile.Commit(f, path); err != nil {
		return fail(err)
	}
	return nil
}

// staleTempAge is how old an unlocked temp file must be before a cleaner
// removes it. A writer locks its temp file right after creating it; a file
// younger than this may be one caught in between, and a cleaner that took
// it would make the writer start over (repeatedly, under a busy GC).
const staleTempAge = 2 * time.Second

// cleanStaleTemps removes temp files whose writer is gone. A live writer
// holds an exclusive flock on its temp file for as long as the file exists,
// so a temp file we can lock (and that is not brand new) belongs to nobody.
func (s *Store) cleanStaleTemps() error {
	entries, err := os.ReadDir(s.tmpDir)
	if err != nil {
		return fmt.Errorf("cleaning temp files in %s: %w", s.tmpDir, err)
	}
	cutoff := time.Now().Add(-staleTempAge)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), tempPrefix) || strings.HasPrefix(e.Name(), tempPrefix+shortLivedPrefix) || !e.Type().IsRegular() {
			continue
		}
		if fi, err := e.Info(); err != nil || fi.ModTime().After(cutoff) {
			continue
		}
		removeIfStale(filepath.Join(s.tmpDir, e.Name()))
	}
	s.cleanShortLivedDirs(entries)
	// index.json.tmp is only written under the exclusive ref lock; if we can
	// take that lock without waiting, a leftover one is stale.
	tmpIndex := filepath.Join(s.root, indexTempFile)
	if _, err := os.Lstat(tmpIndex); err == nil {
		if f, err := os.Open(s.lockPath); err == nil {
			if ok, _ := tryLockFD(f, unix.LOCK_EX); ok {
				os.Remove(tmpIndex)
			}
			f.Close()
		}
	}
	return nil
}

// removeIfStale removes path if no process holds a lock on it.
func removeIfStale(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	ok, err := tryLockFD(f, unix.LOCK_EX)
	if err != nil || !ok {
		return false
	}
	// Still the same file under that name? (Names are random, but be exact.)
	a, err1 := f.Stat()
	b, err2 := os.Lstat(path)
	if err1 != nil || err2 != nil || !os.SameFile(a, b) {
		return false
	}
	return os.Remove(path) == nil
}

// shortLivedPrefix names ShortLivedDir's directories (after tempPrefix).
const shortLivedPrefix = "short-"

// shortLivedLock is the file in a ShortLivedDir whose flock says its
// creator is alive.
const shortLivedLock = ".lock"

// ShortLivedDir creates a private (0700) directory under the store's tmp
// directory, for files a step uses while it runs, such as its secrets.
// The directory is flocked until release, which removes it; if the
// process dies first, the next Open or GC of the store removes it (an
// unlocked directory belongs to nobody), so nothing written there
// outlives a crash for long.
func (s *Store) ShortLivedDir() (dir string, release func(), err error) {
	d, err := os.MkdirTemp(s.tmpDir, tempPrefix+shortLivedPrefix)
	if err != nil {
		return "", nil, fmt.Errorf("creating a temp directory in %s: %w", s.tmpDir, err)
	}
	fail := func(err error) (string, func(), error) {
		os.RemoveAll(d)
		return "", nil, err
	}
	if err := os.Chmod(d, 0o700); err != nil {
		return fail(err)
	}
	f, err := os.OpenFile(filepath.Join(d, shortLivedLock), os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		return fail(err)
	}
	if ok, err := tryLockFD(f, unix.LOCK_EX); err != nil || !ok {
		f.Close()
		return fail(fmt.Errorf("locking %s: %v", d, err))
	}
	return d, func() {
		os.RemoveAll(d)
		f.Close()
	}, nil
}

// cleanShortLivedDirs removes the ShortLivedDirs whose creator is gone:
// unlocked ones (older than a moment: a creator locks right after mkdir).
func (s *Store) cleanShortLivedDirs(entries []os.DirEntry) {
	cutoff := time.Now().Add(-staleTempAge)
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), tempPrefix+shortLivedPrefix) {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.ModTime().After(cutoff) {
			continue
		}
		d := filepath.Join(s.tmpDir, e.Name())
		f, err := os.Open(filepath.Join(d, shortLivedLock))
		if err != nil {
			os.RemoveAll(d) // died before locking
			continue
		}
		if ok, _ := tryLockFD(f, unix.LOCK_EX); ok {
			os.RemoveAll(d)
		}
		f.Close()
	}
}
