package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/pkg/atomicfile"
	"github.com/kiln-build/kiln/pkg/oci"
)

// ErrDigestMismatch is wrapped by the error of a blob whose content does
// not have the digest it was written under.
var ErrDigestMismatch = errors.New("digest mismatch")

// checkHash reports whether h is a digest the store can hold: sha256 with 64
// lowercase hex digits. It keeps malformed digests from becoming paths.
func checkHash(h v1.Hash) error { return oci.CheckDigest(h) }

// BlobWriter streams one blob into a temp file under the store's tmp/
// directory, hashing it with sha256 as it goes. Nothing is visible in
// blobs/ until Commit has verified the digest. The writer holds an flock on
// its temp file so that Open and GC never remove it while it is alive.
// A BlobWriter is not safe for concurrent use.
type BlobWriter struct {
	s *Store
	f *os.File
	h hash.Hash
	n int64
	// flushed is how much writeback was already started for.
	flushed int64
	err     error // sticky write error
	done    bool  // committed or aborted
	// synced is the digest Verify checked the blob against (nothing was
	// written since: Write refuses).
	synced v1.Hash
}

// writebackChunk is how often a BlobWriter starts the writeback of what
// it wrote.
const writebackChunk = 8 << 20

// NewBlobWriter starts a new blob.
func (s *Store) NewBlobWriter(opts ...BlobOption) (*BlobWriter, error) {
	var o blobOptions
	for _, f := range opts {
		f(&o)
	}
	f, err := s.createTemp()
	if err != nil {
		return nil, err
	}
	w := &BlobWriter{s: s, f: f}
	if !o.callerHashes {
		w.h = sha256.New()
	}
	return w, nil
}

// BlobOption changes how a BlobWriter works.
type BlobOption func(*blobOptions)

type blobOptions struct{ callerHashes bool }

// CallerHashes is for a writer that computes the digest of exactly the
// bytes it writes in the same pass (as archive.WriteLayer does): the
// BlobWriter does not hash them a second time, and Commit takes the
// caller's digest as the blob's. Digest returns the zero hash.
func CallerHashes() BlobOption { return func(o *blobOptions) { o.callerHashes = true } }

// createTemp creates a temp file and takes an exclusive flock on it, making
// sure that the name still refers to the locked file (a concurrent cleaner
// may have locked and removed it between create and flock).
func (s *Store) createTemp() (*os.File, error) {
	for range 16 {
		f, err := os.CreateTemp(s.tmpDir, tempPrefix+"blob-*")
		if err != nil {
			return nil, fmt.Errorf("creating temp file in %s: %w", s.tmpDir, err)
		}
		ok, err := tryLockFD(f, unix.LOCK_EX)
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, fmt.Errorf("locking temp file %s: %w", f.Name(), err)
		}
		if ok {
			a, err1 := f.Stat()
			b, err2 := os.Lstat(f.Name())
			if err1 == nil && err2 == nil && os.SameFile(a, b) {
				return f, nil
			}
		}
		f.Close() // a cleaner got it first; it removes the file
	}
	return nil, fmt.Errorf("creating temp file in %s: lost to concurrent cleaners too often", s.tmpDir)
}

// Write appends p to the blob.
func (w *BlobWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("write to a finished blob writer")
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.synced != (v1.Hash{}) {
		return 0, errors.New("write to a verified blob writer")
	}
	n, err := w.f.Write(p)
	if w.h != nil {
		w.h.Write(p[:n])
	}
	w.n += int64(n)
	if w.n-w.flushed >= writebackChunk {
		// Start writing back what is already written, so that Commit's
		// fsync waits for the tail only (advisory: errors are for fsync).
		_ = unix.SyncFileRange(int(w.f.Fd()), w.flushed, w.n-w.flushed, unix.SYNC_FILE_RANGE_WRITE)
		w.flushed = w.n
	}
	if err != nil {
		w.err = fmt.Errorf("writing temp file %s: %w", w.f.Name(), err)
		return n, w.err
	}
	return n, nil
}

// Size returns the number of bytes written so far.
func (w *BlobWriter) Size() int64 { return w.n }

// Digest returns the sha256 digest of what was written so far.
func (w *BlobWriter) Digest() v1.Hash {
	if w.h == nil {
		return v1.Hash{}
	}
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(w.h.Sum(nil))}
}

// Commit verifies that the written bytes have digest want, fsyncs them and
// renames them to blobs/sha256/<hex>. If the store already has the blob the
// temp file is dropped. On any failure the temp file is removed and nothing
// appears in blobs/. Commit and Abort may be called once between them.
func (w *BlobWriter) Commit(want v1.Hash) error {
	if w.done {
		return errors.New("commit of a finished blob writer")
	}
	w.done = true
	tmp := w.f.Name()
	fail := func(err error) error {
		w.f.Close()
		os.Remove(tmp)
		return err
	}
	if w.synced != want {
		if err := w.check(want); err != nil {
			return fail(err)
		}
	}
	dst := w.s.BlobPath(want)
	renamed := false
	err := w.s.withCommitLock(func() error {
		if w.s.touchIfPresent(want) {
			return nil
		}
		if err := os.Rename(tmp, dst); err != nil {
			return fmt.Errorf("committing blob %s: %w", want, err)
		}
		renamed = true
		return nil
	})
	// Close only after the rename: the flock on the temp file keeps
	// cleaners away from it until then.
	w.f.Close()
	if !renamed {
		os.Remove(tmp)
	}
	if err != nil {
		return err
	}
	if renamed {
		return atomicfile.SyncDir(w.s.blobDir)
	}
	return nil
}

// check verifies that the written bytes have digest want and makes them
// durable.
func (w *BlobWriter) check(want v1.Hash) error {
	if w.err != nil {
		return w.err
	}
	if err := checkHash(want); err != nil {
		return fmt.Errorf("committing blob: %w", err)
	}
	if got := w.Digest(); w.h != nil && got != want {
		return fmt.Errorf("blob %w: expected %s, wrote %s (%d bytes)", ErrDigestMismatch, want, got, w.n)
	}
	if err := w.f.Chmod(w.s.fileMode()); err != nil {
		return fmt.Errorf("committing blob %s: %w", want, err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("committing blob %s: fsync: %w", want, err)
	}
	return nil
}

// Verify does what Commit does before the blob becomes visible (the
// digest check and the fsync) without making it visible, so that the
// Commit that follows only renames it: for a caller that keeps the blob
// only once something else checked out (a layer's diff ID), with the slow
// part done meanwhile. A failure removes the temp file, as Commit's does.
func (w *BlobWriter) Verify(want v1.Hash) error {
	if w.done {
		return errors.New("verify of a finished blob writer")
	}
	if err := w.check(want); err != nil {
		w.done = true
		w.f.Close()
		os.Remove(w.f.Name())
		return err
	}
	w.synced = want
	return nil
}

// Abort removes the temp file. It is a no-op after Commit or Abort.
func (w *BlobWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	if err := os.Remove(w.f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing temp file %s: %w", w.f.Name(), err)
	}
	return nil
}

// withCommitLock runs fn while holding the store lock shared, which
// excludes a concurrent GC (that holds it exclusively) but not other
// writers.
func (s *Store) withCommitLock(fn func() error) error {
	lk, err := lockFile(s.lockPath, unix.LOCK_SH)
	if err != nil {
		return err
	}
	defer lk.unlock()
	return fn()
}

// touchIfPresent reports whether the blob exists and, if so, sets its
// modification time to now so that GC's grace period protects it again.
// Call it under withCommitLock.
func (s *Store) touchIfPresent(h v1.Hash) bool {
	p := s.BlobPath(h)
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	now := time.Now()
	_ = os.Chtimes(p, now, now) // best effort: a foreign owner's blob stays as is
	return true
}

// ensurePresent is touchIfPresent under the commit lock.
func (s *Store) ensurePresent(h v1.Hash) (bool, error) {
	var present bool
	err := s.withCommitLock(func() error {
		present = s.touchIfPresent(h)
		return nil
	})
	return present, err
}

// HasBlob reports whether the store holds the blob h.
func (s *Store) HasBlob(h v1.Hash) bool {
	if checkHash(h) != nil {
		return false
	}
	fi, err := os.Stat(s.BlobPath(h))
	return err == nil && fi.Mode().IsRegular()
}

// BlobPath returns the path of blob h (which may not exist), or "" if h is
// not a well-formed sha256 digest.
func (s *Store) BlobPath(h v1.Hash) string {
	if checkHash(h) != nil {
		return ""
	}
	return filepath.Join(s.blobDir, h.Hex)
}

// OpenBlob opens blob h for reading. A missing blob gives an error that
// wraps fs.ErrNotExist.
func (s *Store) OpenBlob(h v1.Hash) (io.ReadCloser, error) {
	if err := checkHash(h); err != nil {
		return nil, fmt.Errorf("opening blob: %w", err)
	}
	f, err := os.Open(s.BlobPath(h))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("blob %s not in store %s: %w", h, s.root, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("opening blob %s: %w", h, err)
	}
	return f, nil
}

// WriteBlob stores the content of r as blob h, verifying the digest. If the
// store already has h, r is not read.
func (s *Store) WriteBlob(h v1.Hash, r io.Reader) error {
	if err := checkHash(h); err != nil {
		return fmt.Errorf("writing blob: %w", err)
	}
	present, err := s.ensurePresent(h)
	if err != nil || present {
		return err
	}
	w, err := s.NewBlobWriter()
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Abort()
		return fmt.Errorf("writing blob %s: %w", h, err)
	}
	return w.Commit(h)
}

// writeBytes stores a small in-memory blob (manifest or config).
func (s *Store) writeBytes(h v1.Hash, data []byte) error {
	if got := sha256Hash(data); got != h {
		return fmt.Errorf("blob %w: expected %s, got %s (%d bytes)", ErrDigestMismatch, h, got, len(data))
	}
	return s.WriteBlob(h, bytes.NewReader(data))
}

func sha256Hash(data []byte) v1.Hash { return oci.SHA256(data) }
