package cache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/cache"
	"github.com/kiln-build/kiln/pkg/store"
)

// memRemote is a cache repository in memory, pushed to from a store.
type memRemote struct {
	name      string
	st        *store.Store // where pushed blobs are read from
	manifests map[string][]byte
	blobs     map[v1.Hash][]byte
	pushes    int
}

func newMemRemote(name string) *memRemote {
	return &memRemote{name: name, manifests: map[string][]byte{}, blobs: map[v1.Hash][]byte{}}
}

func (m *memRemote) Name() string { return m.name }

func (m *memRemote) Manifest(_ context.Context, tag string) ([]byte, error) {
	return m.manifests[tag], nil
}

func (m *memRemote) Blob(_ context.Context, h v1.Hash) (io.ReadCloser, error) {
	b, ok := m.blobs[h]
	if !ok {
		return nil, fmt.Errorf("blob %s unknown", h)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (m *memRemote) Push(_ context.Context, tag string, d v1.Descriptor) error {
	img, err := m.st.Image(d.Digest)
	if err != nil {
		return err
	}
	raw, _ := img.RawManifest()
	mf, _ := img.Manifest()
	for _, desc := range append([]v1.Descriptor{mf.Config}, mf.Layers...) {
		rc, err := m.st.OpenBlob(desc.Digest)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		m.blobs[desc.Digest] = b
	}
	m.manifests[tag] = raw
	m.pushes++
	return nil
}

// TestTieredRemote: an entry exported from one store is found by a fresh
// store through the repository, with its layer left there (a source) until
// it is read, when it is fetched and verified; a broken entry in the
// repository is a logged miss, never an error of the build.
func TestTieredRemote(t *testing.T) {
	ctx := context.Background()
	stA, _ := store.Open(t.TempDir())
	repo := newMemRemote("reg.example/cache")
	repo.st = stA
	a := &cache.Tiered{Local: cache.NewLocal(stA), To: []cache.Remote{repo}}
	key, _ := cache.Key("run", "make")
	layer := writeLayer(t, stA, "built")
	if err := a.Put(ctx, key, cache.Entry{Layer: layer, CreatedBy: "RUN make"}); err != nil {
		t.Fatal(err)
	}
	if n, err := a.Export(ctx); n != 1 || err != nil || repo.pushes != 1 {
		t.Fatalf("export: %d, %v (%d pushes)", n, err, repo.pushes)
	}

	var fetched []v1.Hash
	stB, _ := store.Open(t.TempDir(), store.WithFetcher(func(ctx context.Context, r string, h v1.Hash) (io.ReadCloser, error) {
		if r != repo.name {
			return nil, fmt.Errorf("asked %s", r)
		}
		fetched = append(fetched, h)
		return repo.Blob(ctx, h)
	}))
	var logs []string
	b := &cache.Tiered{Local: cache.NewLocal(stB), From: []cache.Remote{repo}, Warnf: func(f string, args ...any) { logs = append(logs, fmt.Sprintf(f, args...)) }}
	e, err := b.Get(ctx, key)
	if err != nil || e == nil || e.From != repo.name || e.CreatedBy != "RUN make" {
		t.Fatalf("remote get: %+v, %v", e, err)
	}
	ld, _ := layer.Digest()
	if stB.HasBlob(ld) || len(fetched) != 0 {
		t.Errorf("the layer was downloaded before anything read it")
	}
	rc, err := e.Layer.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Contains(data, []byte("built")) || len(fetched) != 1 || !stB.HasBlob(ld) {
		t.Errorf("reading the layer: %d fetches, stored %v, content ok %v", len(fetched), stB.HasBlob(ld), bytes.Contains(data, []byte("built")))
	}
	// Now local (once kept): a second Get does not ask the repository.
	b.Wait()
	delete(repo.manifests, key)
	if e, _ := b.Get(ctx, key); e == nil || e.From != "" {
		t.Errorf("local get after a remote hit: %+v", e)
	}

	// Broken entries: a miss and a log line each.
	bad, _ := cache.Key("run", "bad")
	repo.manifests[bad] = []byte("not json")
	other, _ := cache.Key("run", "other")
	if e, err := b.Get(ctx, bad); e != nil || err != nil {
		t.Errorf("malformed manifest: %+v, %v", e, err)
	}
	if e, err := b.Get(ctx, other); e != nil || err != nil {
		t.Errorf("absent entry: %+v, %v", e, err)
	}
	if len(logs) != 1 || !strings.Contains(logs[0], "malformed manifest") {
		t.Errorf("logs: %q", logs)
	}
	// Export failures are reported, not fatal.
	failing := &failRemote{}
	c := &cache.Tiered{Local: cache.NewLocal(stA), To: []cache.Remote{failing}, Warnf: func(string, ...any) {}}
	if _, err := c.Get(ctx, key); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Export(ctx); n != 0 || err == nil {
		t.Errorf("failing export: %d, %v", n, err)
	}
}

type failRemote struct{}

func (failRemote) Name() string                                         { return "reg.example/denied" }
func (failRemote) Manifest(context.Context, string) ([]byte, error)     { return nil, nil }
func (failRemote) Blob(context.Context, v1.Hash) (io.ReadCloser, error) { return nil, errors.New("no") }
func (failRemote) Push(context.Context, string, v1.Descriptor) error    { return errors.New("denied") }

// The source of a fetched entry's layer is a hint, not synced: a crash
// may lose or tear it. The entry is then a miss in the store and is
// fetched from the repository again, never an error or a layer that
// cannot be read.
func TestTieredLostSourceHint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	stA, _ := store.Open(t.TempDir())
	repo := newMemRemote("reg.example/cache")
	repo.st = stA
	a := &cache.Tiered{Local: cache.NewLocal(stA), To: []cache.Remote{repo}}
	key, _ := cache.Key("copy", "app")
	layer := writeLayer(t, stA, "app")
	if err := a.Put(ctx, key, cache.Entry{Layer: layer}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Export(ctx); err != nil {
		t.Fatal(err)
	}
	stB, _ := store.Open(t.TempDir(), store.WithFetcher(func(ctx context.Context, _ string, h v1.Hash) (io.ReadCloser, error) {
		return repo.Blob(ctx, h)
	}))
	b := &cache.Tiered{Local: cache.NewLocal(stB), From: []cache.Remote{repo}, Warnf: func(f string, args ...any) { t.Errorf(f, args...) }}
	ld, _ := layer.Digest()
	hints := filepath.Join(stB.Root(), "sources", ld.Algorithm, ld.Hex+".hints")
	for _, torn := range []string{"", "reg.exa", "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"} {
		if e, err := b.Get(ctx, key); err != nil || e == nil {
			t.Fatalf("get: %+v, %v", e, err)
		}
		b.Wait()
		if got := stB.Sources(ld); len(got) != 1 || got[0] != repo.name {
			t.Fatalf("sources after a fetch: %v", got)
		}
		// The crash: the hint is gone or torn.
		if err := os.WriteFile(hints, []byte(torn), 0o600); err != nil {
			t.Fatal(err)
		}
		if e, err := cache.NewLocal(stB).Get(ctx, key); e != nil || err != nil {
			t.Fatalf("local entry without its layer's source (%q): %+v, %v; want a miss", torn, e, err)
		}
		e, err := b.Get(ctx, key)
		if err != nil || e == nil || e.From != repo.name {
			t.Fatalf("get after losing the hint (%q): %+v, %v", torn, e, err)
		}
		rc, err := e.Layer.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Contains(data, []byte("app")) {
			t.Fatalf("layer read after losing the hint: %q", data)
		}
		// The fetch keeps the entry in the background: wait for it before
		// taking its blob away (a keep still running then failed, and
		// warned after the test had ended).
		b.Wait()
		if err := os.Remove(stB.BlobPath(ld)); err != nil { // not held again
			t.Fatal(err)
		}
	}
}

// An entry fetched from a repository is not pushed back to it: the tag
// there names that very manifest. One made here is pushed.
func TestTieredExportSkipsFetched(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	stA, _ := store.Open(t.TempDir())
	repo := newMemRemote("reg.example/cache")
	repo.st = stA
	a := &cache.Tiered{Local: cache.NewLocal(stA), To: []cache.Remote{repo}}
	key, _ := cache.Key("copy", "lib")
	if err := a.Put(ctx, key, cache.Entry{Layer: writeLayer(t, stA, "lib")}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Export(ctx); err != nil || repo.pushes != 1 {
		t.Fatalf("export: %v, %d pushes", err, repo.pushes)
	}
	stB, _ := store.Open(t.TempDir())
	repo.st = stB
	b := &cache.Tiered{Local: cache.NewLocal(stB), From: []cache.Remote{repo}, To: []cache.Remote{repo}}
	if e, err := b.Get(ctx, key); err != nil || e == nil {
		t.Fatalf("get: %+v, %v", e, err)
	}
	mine, _ := cache.Key("copy", "app")
	if err := b.Put(ctx, mine, cache.Entry{Layer: writeLayer(t, stB, "app")}); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Export(ctx); n != 2 || err != nil || repo.pushes != 2 {
		t.Fatalf("export: %d, %v, %d pushes; want 2 exported, 1 more push", n, err, repo.pushes)
	}
}
