package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

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

// Sources lists the repositories blob h can be fetched from (none when it
// was never recorded).
func (s *Store) Sources(h v1.Hash) []string {
	if checkHash(h) != nil {
		return nil
	}
	data, err := os.ReadFile(s.sourcePath(h))
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// RecordSource notes that blob h can be fetched from repo.
func (s *Store) RecordSource(h v1.Hash, repo string) error {
	if err := checkHash(h); err != nil {
		return fmt.Errorf("recording source: %w", err)
	}
	if repo == "" || strings.ContainsAny(repo, "\n\r") {
		return fmt.Errorf("recording source of %s: invalid repository %q", h, repo)
	}
	have := s.Sources(h)
	for _, r := range have {
		if r == repo {
			return nil
		}
	}
	repos := append(have, repo)
	sort.Strings(repos)
	p := s.sourcePath(h)
	if err := os.MkdirAll(filepath.Dir(p), s.dirMode()); err != nil {
		return err
	}
	return atomicfile.WriteFile(p, []byte(strings.Join(repos, "\n")+"\n"), s.fileMode())
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
