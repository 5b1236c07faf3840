package cache_test

import (
	"archive/tar"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/cache"
	"github.com/kiln-build/kiln/pkg/store"
)

func TestKey(t *testing.T) {
	type in struct {
		A string
		B []string
		M map[string]string
	}
	k1, err := cache.Key("run", in{A: "x", B: []string{"1", "2"}, M: map[string]string{"b": "2", "a": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := cache.Key("run", in{A: "x", B: []string{"1", "2"}, M: map[string]string{"a": "1", "b": "2"}})
	if k1 != k2 || len(k1) != 64 {
		t.Errorf("same inputs, keys %s and %s", k1, k2)
	}
	for _, other := range []in{{A: "y", B: []string{"1", "2"}}, {A: "x", B: []string{"2", "1"}}, {A: "x", B: []string{"1", "2"}, M: map[string]string{"a": "1"}}} {
		if k, _ := cache.Key("run", other); k == k1 {
			t.Errorf("inputs %+v give the same key", other)
		}
	}
	if k, _ := cache.Key("copy", in{A: "x", B: []string{"1", "2"}, M: map[string]string{"b": "2", "a": "1"}}); k == k1 {
		t.Error("the kind is not part of the key")
	}
}

// TestKeyKindsUnchanged: each kind's keys are the ones kiln wrote before
// kinds were typed (the kind is hashed into the key), so that existing
// caches keep hitting.
func TestKeyKindsUnchanged(t *testing.T) {
	for kind, want := range map[cache.Kind]string{
		cache.KindRun:        "a64733129356e5db48e949e32db591a3d1de89600dcc201e94dc371a4a22a991",
		cache.KindCopy:       "e4e14929b34bc27f91805ca6b748de191a8f06d62123b38f572d7065973c83e1",
		cache.KindLayerExact: "115931ee3681b3690725e1ffa90c3c74304531c612a9b7ad1c263de8222868ed",
		cache.KindWorkdir:    "e1c444a648154710514f0ca7b6b88e0b0d6bb521484eb9cc4a8ab3968cfb5c52",
		cache.KindLayerIndex: "ff8098d38459cd701b4f9f78bd5ef37fbe9409f94d46e60ac80d8af986f7c376",
	} {
		if got, err := cache.Key(kind, "in"); err != nil || got != want {
			t.Errorf("key of kind %s: %s (%v), want %s as before", kind, got, err, want)
		}
	}
}

// writeLayer stores a one-file layer in st.
func writeLayer(t *testing.T, st *store.Store, content string) v1.Layer {
	t.Helper()
	bw, err := st.NewBlobWriter()
	if err != nil {
		t.Fatal(err)
	}
	info, err := archive.WriteLayer(bw, archive.Gzip, archive.TarOptions{}, func(tw *archive.TarWriter) error {
		if err := tw.WriteHeader(&tar.Header{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(content))}); err != nil {
			return err
		}
		_, err := tw.Write([]byte(content))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := bw.Commit(info.Digest); err != nil {
		t.Fatal(err)
	}
	l, err := st.Layer(v1.Descriptor{MediaType: archive.Gzip.MediaType(true), Size: info.Size, Digest: info.Digest}, info.DiffID)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestLocalPutGet: an entry comes back with its layer, diff ID and headers;
// GC keeps what a cache entry names (and removes it once the entry is
// gone); unknown keys and broken entries are misses or clear errors.
func TestLocalPutGet(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	st, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	c := cache.NewLocal(st)
	key, _ := cache.Key("run", "echo hi")
	if e, err := c.Get(ctx, key); e != nil || err != nil {
		t.Fatalf("empty cache: %v, %v", e, err)
	}
	layer := writeLayer(t, st, "hello")
	mtime := time.Unix(1700000000, 123).UTC()
	hdrs := []*tar.Header{
		{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5, ModTime: mtime},
		{Name: "link", Typeflag: tar.TypeSymlink, Mode: 0o777, Linkname: "/f", Uid: 7, Gid: 8},
	}
	if err := c.Put(ctx, key, cache.Entry{Layer: layer, Headers: hdrs, CreatedBy: "RUN echo hi"}); err != nil {
		t.Fatal(err)
	}
	// Everything unreferenced by a ref goes, except what the entry names.
	if _, _, err := st.GCWithGrace(ctx, 0); err != nil {
		t.Fatal(err)
	}
	e, err := c.Get(ctx, key)
	if err != nil || e == nil {
		t.Fatalf("get after GC: %v, %v", e, err)
	}
	wd, _ := layer.Digest()
	wdiff, _ := layer.DiffID()
	gd, _ := e.Layer.Digest()
	gdiff, _ := e.Layer.DiffID()
	if gd != wd || gdiff != wdiff || e.CreatedBy != "RUN echo hi" {
		t.Errorf("entry: layer %s/%s %q, want %s/%s", gd, gdiff, e.CreatedBy, wd, wdiff)
	}
	if len(e.Headers) != 2 || e.Headers[0].Name != "f" || !e.Headers[0].ModTime.Equal(mtime) || e.Headers[1].Linkname != "/f" ||
		e.Headers[1].Typeflag != tar.TypeSymlink || e.Headers[1].Uid != 7 || e.Headers[1].Gid != 8 {
		t.Errorf("headers: %+v %+v", e.Headers[0], e.Headers[1])
	}
	rc, err := e.Layer.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()

	// --cache-ttl: an entry older than the TTL is a miss, a younger one a
	// hit; the entry stays for a build without a TTL.
	time.Sleep(20 * time.Millisecond)
	for ttl, hit := range map[time.Duration]bool{10 * time.Millisecond: false, time.Hour: true, 0: true} {
		aged := cache.NewLocal(st)
		aged.TTL = ttl
		if e, err := aged.Get(ctx, key); err != nil || (e != nil) != hit {
			t.Errorf("TTL %v: entry %v (%v), want hit %v", ttl, e != nil, err, hit)
		}
	}

	// A cache ref file that is not JSON is an error naming the key.
	other, _ := cache.Key("run", "other")
	if err := os.WriteFile(filepath.Join(root, "cache", other), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, other); err == nil || !strings.Contains(err.Error(), other) {
		t.Errorf("malformed ref: %v", err)
	}
	if _, err := c.Get(ctx, "../../etc/passwd"); err == nil {
		t.Error("a key that is not a sha256 was accepted")
	}

	// Without the entry, GC takes the layer.
	if err := os.Remove(filepath.Join(root, "cache", key)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.GCWithGrace(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if st.HasBlob(wd) {
		t.Error("GC kept the layer of a removed cache entry")
	}
}

// TestLocalPrune: Prune removes entries not used since the cutoff (a hit
// counts as a use), or all of them; GC then takes their layers.
func TestLocalPrune(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	st, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	c := cache.NewLocal(st)
	oldKey, _ := cache.Key("run", "old")
	newKey, _ := cache.Key("run", "new")
	oldLayer := writeLayer(t, st, "old")
	if err := c.Put(ctx, oldKey, cache.Entry{Layer: oldLayer}); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, newKey, cache.Entry{Layer: writeLayer(t, st, "new")}); err != nil {
		t.Fatal(err)
	}
	long := time.Now().Add(-48 * time.Hour)
	for _, k := range []string{oldKey, newKey} {
		if err := os.Chtimes(filepath.Join(root, "cache", k), long, long); err != nil {
			t.Fatal(err)
		}
	}
	// A hit makes "new" recently used.
	if e, err := c.Get(ctx, newKey); e == nil || err != nil {
		t.Fatalf("get: %v %v", e, err)
	}
	n, err := c.Prune(time.Now().Add(-24 * time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("prune until 24h: %d, %v; want 1", n, err)
	}
	if e, _ := c.Get(ctx, oldKey); e != nil {
		t.Error("the old entry survived")
	}
	if e, _ := c.Get(ctx, newKey); e == nil {
		t.Error("the recently used entry was pruned")
	}
	if _, _, err := st.GCWithGrace(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if d, _ := oldLayer.Digest(); st.HasBlob(d) {
		t.Error("GC kept the pruned entry's layer")
	}
	if n, err := c.Prune(time.Time{}); err != nil || n != 1 {
		t.Errorf("prune all: %d, %v; want 1", n, err)
	}
}
