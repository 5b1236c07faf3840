package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-build/kiln/pkg/atomicfile"
)

// A store image may reference layers it does not hold: a base layer that a
// build never needed stays in its registry, and the store records where to
// fetch it (root/sources/sha256/<hex>: one repository per line). Reading
// such a layer fetches it through the Fetcher and keeps it, verified, in the
// store; pushing it to its own registry never needs its bytes at all.

// Fetcher opens blob h of repository repo (e.g. "registry.example.com/team/base").
type Fetcher func(ctx context.Context, repo string, h v1.Hash) (io.ReadCloser, error)

// An Option configures Open.
type Option func(*Store)

// WithFetcher is how layers the store only knows the source of are read
// (without one, reading such a layer is an error).
func WithFetcher(f Fetcher) Option { return func(s *Store) { s.fetcher = f } }

func (s *Store) sourcePath(h v1.Hash) string {
	return filepath.Join(s.root, "sources", h.Algorithm, h.Hex)
}

// hintsPath is where the unsynced records of h are appended.
func (s *Store) hintsPath(h v1.Hash) string { return s.sourcePath(h) + ".hints" }

// A blob's sources are kept in two records, one repository a line:
//
//   - sources/sha256/<hex> holds those an image depends on (its layer is
//     not in the store, only there): written whole under a temporary name,
//     synced and renamed, before the image's ref is written.
//   - sources/sha256/<hex>.hints holds hints whose loss after a crash
//     costs a fetch or an upload, never more: where a push found or put
//     the blob, where a cache entry's layer is (a cache entry whose layer
//     has neither a copy nor a source is a miss, cache.Local.Get, and is
//     fetched again). They are appended without fsync, so a crash can
//     leave the file missing, cut short, or holding NUL bytes where its
//     data never reached the disk: parseSources keeps only whole lines
//     ('\n'-terminated) of printable characters without spaces, and what a
//     crash tore reads as never recorded.

// Sources lists the repositories blob h can be fetched from (none when it
// was never recorded), those an image depends on first.
func (s *Store) Sources(h v1.Hash) []string {
	if checkHash(h) != nil {
		return nil
	}
	kept, _ := os.ReadFile(s.sourcePath(h))
	hints, _ := os.ReadFile(s.hintsPath(h))
	return parseSources(kept, hints)
}

// parseSources returns the repositories of records, in order, without the
// lines a crash may have torn, and without duplicates (two processes may
// append the same repository at once).
func parseSources(records ...[]byte) []string {
	var out []string
	for _, data := range records {
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break // cut short
			}
			l := string(data[:i])
			data = data[i+1:]
			if validSourceLine(l) && !slices.Contains(out, l) {
				out = append(out, l)
			}
		}
	}
	return out
}

func validSourceLine(l string) bool {
	if l == "" {
		return false
	}
	for i := 0; i < len(l); i++ {
		if l[i] <= ' ' || l[i] >= 0x7f {
			return false
		}
	}
	return true
}

func checkSource(h v1.Hash, repo string) error {
	if err := checkHash(h); err != nil {
		return fmt.Errorf("recording source: %w", err)
	}
	if !validSourceLine(repo) {
		return fmt.Errorf("recording source of %s: invalid repository %q", h, repo)
	}
	return nil
}

// RecordSource notes that blob h can be fetched from repo: a hint (a push
// mounts from there, a cache entry's layer is read from there), appended
// without fsync (see hintsPath).
func (s *Store) RecordSource(h v1.Hash, repo string) error {
	if err := checkSource(h, repo); err != nil {
		return err
	}
	if slices.Contains(s.Sources(h), repo) {
		return nil
	}
	p := s.hintsPath(h)
	if err := os.MkdirAll(filepath.Dir(p), s.dirMode()); err != nil {
		return fmt.Errorf("recording source of %s: %w", h, err)
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_APPEND|os.O_CREATE, s.fileMode())
	if err != nil {
		return fmt.Errorf("recording source of %s: %w", h, err)
	}
	defer f.Close()
	line := repo + "\n"
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, fi.Size()-1); err == nil && last[0] != '\n' {
			// Crash debris (a live append is never seen in part): the
			// space ends the torn line as an invalid one.
			line = " \n" + line
		}
	}
	if _, err := f.WriteString(line); err != nil {
		return fmt.Errorf("recording source of %s: %w", h, err)
	}
	return nil
}

// keepSources records, for each blob, a repository it can be fetched from
// that an image will depend on: each record is written whole and synced
// (the fsyncs at once: the file system commits them together), then
// renamed, and the directory is synced once. A repository kept already
// costs nothing.
func (s *Store) keepSources(sources map[v1.Hash]string) error {
	type rec struct {
		h    v1.Hash
		data []byte
		tmp  *os.File
	}
	var recs []*rec
	for h, repo := range sources {
		if err := checkSource(h, repo); err != nil {
			return err
		}
		kept, err := os.ReadFile(s.sourcePath(h))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("recording source of %s: %w", h, err)
		}
		have := parseSources(kept)
		if slices.Contains(have, repo) {
			continue
		}
		repos := append(have, repo)
		sort.Strings(repos)
		recs = append(recs, &rec{h: h, data: []byte(strings.Join(repos, "\n") + "\n")})
	}
	if len(recs) == 0 {
		return nil
	}
	dir := filepath.Dir(s.sourcePath(recs[0].h))
	if err := os.MkdirAll(dir, s.dirMode()); err != nil {
		return fmt.Errorf("recording sources: %w", err)
	}
	defer func() {
		for _, r := range recs {
			if r.tmp != nil {
				r.tmp.Close()
				os.Remove(r.tmp.Name())
			}
		}
	}()
	var g errgroup.Group
	for _, r := range recs {
		f, err := os.CreateTemp(dir, "."+r.h.Hex+".tmp-*")
		if err != nil {
			return fmt.Errorf("recording source of %s: %w", r.h, err)
		}
		r.tmp = f
		g.Go(func() error {
			if _, err := f.Write(r.data); err != nil {
				return fmt.Errorf("recording source of %s: %w", r.h, err)
			}
			if err := f.Chmod(s.fileMode()); err != nil {
				return fmt.Errorf("recording source of %s: %w", r.h, err)
			}
			if err := f.Sync(); err != nil {
				return fmt.Errorf("recording source of %s: fsync: %w", r.h, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, r := range recs {
		if err := os.Rename(r.tmp.Name(), s.sourcePath(r.h)); err != nil {
			return fmt.Errorf("recording source of %s: %w", r.h, err)
		}
		r.tmp.Close()
		r.tmp = nil
	}
	return atomicfile.SyncDir(dir)
}

// openBlob serves the store's blobs (blobSource): a held blob, or one
// fetched from a recorded source and stored while it is read.
func (s *Store) openBlob(h v1.Hash) (io.ReadCloser, error) {
	rc, err := s.OpenBlob(h)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return rc, err
	}
	repos := s.Sources(h)
	if len(repos) == 0 {
		return nil, err
	}
	fetch := s.fetcher
	if fetch == nil {
		return nil, fmt.Errorf("blob %s is not in store %s; it comes from %s, and this store has no way to fetch it", h, s.root, repos[0])
	}
	var errs []error
	for _, repo := range repos {
		body, ferr := fetch(context.Background(), repo, h)
		if ferr != nil {
			errs = append(errs, fmt.Errorf("fetching %s from %s: %w", h, repo, ferr))
			continue
		}
		w, werr := s.NewBlobWriter()
		if werr != nil {
			body.Close()
			return nil, werr
		}
		return &teeBlob{body: body, w: w, want: h}, nil
	}
	return nil, errors.Join(errs...)
}

// teeBlob streams a fetched blob to its reader and into the store; the blob
// is committed (verified) only when it was read to the end. Close may be
// called while a Read is under way (to end a read-ahead): the blob is then
// dropped, never committed.
type teeBlob struct {
	body io.ReadCloser
	w    *BlobWriter
	want v1.Hash

	mu     sync.Mutex // guards w, done, err and closed
	done   bool
	err    error
	closed bool
}

func (t *teeBlob) Read(p []byte) (int, error) {
	n, err := t.body.Read(p)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, fmt.Errorf("blob %s: read after close", t.want)
	}
	if n > 0 && t.err == nil {
		if _, werr := t.w.Write(p[:n]); werr != nil {
			t.err = werr
		}
	}
	if errors.Is(err, io.EOF) && !t.done {
		t.done = true
		if t.err == nil {
			if cerr := t.w.Commit(t.want); cerr != nil {
				return n, cerr // a corrupted blob is never accepted
			}
		} else {
			t.w.Abort()
		}
	}
	return n, err
}

func (t *teeBlob) Close() error {
	t.mu.Lock()
	t.closed = true
	if !t.done {
		t.done = true
		t.w.Abort()
	}
	t.mu.Unlock()
	return t.body.Close()
}

// WriteOption changes how WriteImage and WriteIndex store an image.
type WriteOption func(*writeOpts)

type writeOpts struct {
	sources map[v1.Hash]string
}

func writeOptions(opts []WriteOption) *writeOpts {
	o := &writeOpts{}
	for _, f := range opts {
		f(o)
	}
	return o
}

// WithSources leaves the layers listed (digest to repository) in their
// registries instead of copying them: the store records where they are and
// fetches one only when something reads it. Layers it already holds are
// unaffected.
func WithSources(sources map[v1.Hash]string) WriteOption {
	return func(o *writeOpts) { o.sources = sources }
}
