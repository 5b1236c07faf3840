package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Remote is a registry repository that holds cache entries, each under the
// tag that is its key (buildah's --cache-from/--cache-to and kaniko's
// --cache-repo keep them the same way). Registry (registry.go) is the one
// kiln build uses, over a registry.Client; tests use an in-process registry.
type Remote interface {
	// Name is the repository, as recorded for blobs fetched on demand
	// (store sources).
	Name() string
	// Manifest returns the raw manifest tagged tag, or nil when there is
	// none.
	Manifest(ctx context.Context, tag string) ([]byte, error)
	// Blob opens a blob of the repository.
	Blob(ctx context.Context, h v1.Hash) (io.ReadCloser, error)
	// Push pushes the stored manifest d and what it references, tagged
	// tag.
	Push(ctx context.Context, tag string, d v1.Descriptor) error
}

// Tiered is the local cache in front of registry repositories: Get looks
// in Local, then in each of From; an entry found in a repository is
// recorded in Local with its layer left in the registry (fetched when a
// later step reads it, mounted when an image that holds it is pushed
// there). Every entry a build uses or makes is pushed to each of To by
// Export.
type Tiered struct {
	Local *Local
	From  []Remote
	To    []Remote
	// Warnf, when set, gets a warning per problem with a repository (a
	// cache that cannot be read or written never fails a build).
	Warnf func(format string, args ...any)

	mu   sync.Mutex
	used []string // keys to export, in first-use order
	seen map[string]bool
	// fetched are the entries copied from a repository: key to where,
	// and the manifest there (Export does not push one back).
	fetched map[string]fetchedEntry
	keeping sync.WaitGroup // fetched entries being kept in Local
}

type fetchedEntry struct {
	repo     string
	manifest v1.Hash
}

// noteFetched records that key's entry, manifest md, came from repo.
func (t *Tiered) noteFetched(key, repo string, md v1.Hash) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fetched == nil {
		t.fetched = map[string]fetchedEntry{}
	}
	t.fetched[key] = fetchedEntry{repo: repo, manifest: md}
}

// there reports whether r has key's entry d already: it was fetched from
// r, tagged key, this build.
func (t *Tiered) there(r Remote, key string, d v1.Descriptor) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.fetched[key]
	return ok && f.repo == r.Name() && f.manifest == d.Digest
}

// Get implements the build's step cache.
func (t *Tiered) Get(ctx context.Context, key string) (*Entry, error) {
	e, err := t.Local.Get(ctx, key)
	if err != nil || e != nil {
		if e != nil {
			t.use(key)
		}
		return e, err
	}
	for _, r := range t.From {
		e, err := t.fetch(ctx, r, key)
		if err != nil {
			t.warnf("cache %s: %v", r.Name(), err)
			continue
		}
		if e == nil {
			continue
		}
		e.From = r.Name()
		t.use(key)
		return e, nil
	}
	return nil, nil
}

// Put implements the build's step cache.
func (t *Tiered) Put(ctx context.Context, key string, e Entry) error {
	if err := t.Local.Put(ctx, key, e); err != nil {
		return err
	}
	t.use(key)
	return nil
}

func (t *Tiered) use(key string) {
	if len(t.To) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen == nil {
		t.seen = map[string]bool{}
	}
	if !t.seen[key] {
		t.seen[key] = true
		t.used = append(t.used, key)
	}
}

func (t *Tiered) warnf(format string, args ...any) {
	if t.Warnf != nil {
		t.Warnf(format, args...)
	}
}

// fetch reads the entry key of r, its manifest and config (small), and
// returns it with its layer left in r (a source), or nil when r has none.
// The entry is kept in the local cache in the background (keep): its
// blobs' and ref's fsyncs, several per entry, wait for the disk while the
// build goes on, and those of several entries share commits. Wait waits
// for them.
func (t *Tiered) fetch(ctx context.Context, r Remote, key string) (*Entry, error) {
	raw, err := r.Manifest(ctx, key)
	if err != nil || raw == nil {
		return nil, err
	}
	m, err := parseManifest(raw, key)
	if err != nil {
		return nil, err
	}
	rc, err := r.Blob(ctx, m.Config.Digest)
	if err != nil {
		return nil, fmt.Errorf("entry %s: config: %w", key, err)
	}
	rawCfg, err := readVerified(rc, m.Config.Digest, maxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("entry %s: config: %w", key, err)
	}
	cfg, err := parseConfig(rawCfg, key)
	if err != nil {
		return nil, err
	}
	st := t.Local.st
	if !st.HasBlob(m.Layers[0].Digest) {
		if err := st.RecordSource(m.Layers[0].Digest, r.Name()); err != nil {
			return nil, err
		}
	}
	e, err := t.Local.entry(key, m, cfg)
	if err != nil || e == nil {
		return e, err
	}
	md := sha(raw)
	mt := m.MediaType
	if mt == "" {
		mt = types.OCIManifestSchema1
	}
	t.background(func() error {
		if err := writeBlobs(st, rawCfg, raw); err != nil {
			return fmt.Errorf("keeping entry %s: %w", key, err)
		}
		if err := st.SetCacheRef(key, v1.Descriptor{MediaType: mt, Size: int64(len(raw)), Digest: md}); err != nil {
			return fmt.Errorf("keeping entry %s: %w", key, err)
		}
		t.noteFetched(key, r.Name(), md)
		return nil
	})
	return e, nil
}

// background runs keep, an entry's copy into the local cache, while the
// build goes on; a failure is logged (the entry is then fetched again by
// a later build).
func (t *Tiered) background(keep func() error) {
	t.keeping.Add(1)
	go func() {
		defer t.keeping.Done()
		if err := keep(); err != nil {
			t.warnf("%v", err)
		}
	}()
}

// Wait waits until the entries fetched from repositories are kept in the
// local cache. Export waits for them; a build that exports nothing calls
// Wait before it exits.
func (t *Tiered) Wait() { t.keeping.Wait() }

// Export pushes every entry the build used or made to each of To, and
// returns how many pushes succeeded; failures are logged, and the first is
// returned.
func (t *Tiered) Export(ctx context.Context) (int, error) {
	t.Wait()
	t.mu.Lock()
	keys := append([]string(nil), t.used...)
	t.mu.Unlock()
	var first error
	n := 0
	for _, r := range t.To {
		for _, k := range keys {
			d, ok, err := t.Local.st.CacheRef(k)
			if err == nil && !ok {
				err = errors.New("entry vanished from the local store")
			}
			if err == nil && t.there(r, k, d) {
				n++ // pushing it would change nothing
				continue
			}
			if err == nil {
				err = r.Push(ctx, k, d)
			}
			if err != nil {
				t.warnf("cache %s: pushing %s: %v", r.Name(), k, err)
				if first == nil {
					first = err
				}
				continue
			}
			n++
		}
	}
	return n, first
}

// Strict reports whether a failed Export must fail the build: one of To
// asks for it (Registry.Strict: buildx's form without ignore-error=true).
func (t *Tiered) Strict() bool {
	for _, to := range t.To {
		if s, ok := to.(interface{ Strict() bool }); ok && s.Strict() {
			return true
		}
	}
	return false
}
