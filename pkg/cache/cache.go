package cache

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-build/kiln/pkg/store"
)

// ConfigMediaType is the media type of an entry's config blob.
const ConfigMediaType types.MediaType = "application/vnd.kiln.step-cache.config.v1+json"

// keyVersion changes every key when the meaning of a step's inputs (or
// what its layer holds) changes.
const keyVersion = "kiln-step-cache-v1"

// Kind is what a cache key is the key of. It is hashed into the key, so
// that two kinds of entry never share a key whatever their inputs; its
// values are part of the keys' format (a new kind is a new constant, an
// existing one never changes).
type Kind string

// The kinds of cache key.
const (
	// KindRun is a RUN step's result (pkg/build's runStep).
	KindRun Kind = "run"
	// KindCopy is a COPY or ADD layer by its inputs' content.
	KindCopy Kind = "copy"
	// KindLayerExact is a COPY or ADD layer by the exact files it holds.
	KindLayerExact Kind = "layer-exact"
	// KindWorkdir is a WORKDIR layer.
	KindWorkdir Kind = "workdir"
	// KindLayerIndex is a layer's path index (IndexKey).
	KindLayerIndex Kind = "layer-index"
)

// Key returns the cache key of a step of the given kind whose inputs are
// inputs: the hex sha256 of their canonical JSON encoding (struct fields
// in order, map keys sorted), prefixed by the key version and kind.
func Key(kind Kind, inputs any) (string, error) {
	raw, err := json.Marshal(struct {
		Version string `json:"v"`
		Kind    Kind   `json:"kind"`
		Inputs  any    `json:"inputs"`
	}{keyVersion, kind, inputs})
	if err != nil {
		return "", fmt.Errorf("cache key of %s: %w", kind, err)
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), nil
}

// Entry is a cached step result.
type Entry struct {
	// Layer is the step's layer.
	Layer v1.Layer
	// Headers are the tar headers of the layer's entries, in order (the
	// build keeps track of the directories and symlinks steps make).
	Headers []*tar.Header
	// CreatedBy is the step's history text.
	CreatedBy string
	// From is the repository the entry came from ("" for the local
	// cache).
	From string
}

// entryConfig is an entry's config blob.
type entryConfig struct {
	Key       string        `json:"key"`
	CreatedBy string        `json:"createdBy"`
	Created   time.Time     `json:"created"`
	DiffID    v1.Hash       `json:"diffID"`
	Entries   []entryHeader `json:"entries"`
}

// entryHeader is the part of a tar header the build needs again.
type entryHeader struct {
	Name     string `json:"name"`
	Type     byte   `json:"type"`
	Mode     int64  `json:"mode"`
	UID      int    `json:"uid,omitempty"`
	GID      int    `json:"gid,omitempty"`
	Size     int64  `json:"size,omitempty"`
	Linkname string `json:"link,omitempty"`
	ModTime  int64  `json:"mtime,omitempty"` // Unix nanoseconds
}

func toEntryHeaders(hs []*tar.Header) []entryHeader {
	out := make([]entryHeader, 0, len(hs))
	for _, h := range hs {
		e := entryHeader{Name: h.Name, Type: h.Typeflag, Mode: h.Mode, UID: h.Uid, GID: h.Gid, Size: h.Size, Linkname: h.Linkname}
		if !h.ModTime.IsZero() {
			e.ModTime = h.ModTime.UnixNano()
		}
		out = append(out, e)
	}
	return out
}

func fromEntryHeaders(es []entryHeader) []*tar.Header {
	out := make([]*tar.Header, 0, len(es))
	for _, e := range es {
		h := &tar.Header{Name: e.Name, Typeflag: e.Type, Mode: e.Mode, Uid: e.UID, Gid: e.GID, Size: e.Size, Linkname: e.Linkname}
		if e.ModTime != 0 {
			h.ModTime = time.Unix(0, e.ModTime).UTC()
		}
		out = append(out, h)
	}
	return out
}

// Local is the step cache in a kiln store.
type Local struct {
	st *store.Store
	// TTL, when positive, makes entries created longer ago than TTL
	// misses (buildah's and kaniko's --cache-ttl): a step whose cached
	// result is that old runs again, and its new result replaces it.
	TTL time.Duration
}

// NewLocal returns the cache kept in st.
func NewLocal(st *store.Store) *Local { return &Local{st: st} }

// maxConfigSize bounds an entry's config blob (a RUN step that makes a
// million files has a config of about 100 MB).
const maxConfigSize = 256 << 20

// Get returns the entry for key, or nil when there is none, or when what
// it names is no longer complete in the store.
func (l *Local) Get(ctx context.Context, key string) (*Entry, error) {
	d, ok, err := l.st.CacheRef(key)
	if err != nil || !ok {
		return nil, err
	}
	raw, err := l.readBlob(d.Digest, 4<<20)
	if err != nil {
		return nil, missOrErr(err)
	}
	m, err := parseManifest(raw, key)
	if err != nil {
		return nil, err
	}
	rawCfg, err := l.readBlob(m.Config.Digest, maxConfigSize)
	if err != nil {
		return nil, missOrErr(err)
	}
	cfg, err := parseConfig(rawCfg, key)
	if err != nil {
		return nil, err
	}
	e, err := l.entry(key, m, cfg)
	if e != nil {
		l.st.TouchCacheRef(key)
	}
	return e, err
}

// entry is the entry of manifest m and config cfg, or nil when it is too
// old for the TTL or its layer is neither in the store nor known to a
// registry.
func (l *Local) entry(key string, m *v1.Manifest, cfg *entryConfig) (*Entry, error) {
	if l.TTL > 0 && time.Since(cfg.Created) > l.TTL {
		return nil, nil // too old for --cache-ttl
	}
	ld := m.Layers[0]
	if !l.st.HasBlob(ld.Digest) && len(l.st.Sources(ld.Digest)) == 0 {
		return nil, nil // neither here nor known to a registry
	}
	layer, err := l.st.Layer(ld, cfg.DiffID)
	if err != nil {
		return nil, fmt.Errorf("cache entry %s: %w", key, err)
	}
	return &Entry{Layer: layer, Headers: fromEntryHeaders(cfg.Entries), CreatedBy: cfg.CreatedBy}, nil
}

// Put stores e under key. e.Layer must already be in the store.
func (l *Local) Put(ctx context.Context, key string, e Entry) error {
	if e.Layer == nil {
		return errors.New("cache put: no layer")
	}
	ld, err := partial.Descriptor(e.Layer)
	if err != nil {
		return fmt.Errorf("cache put %s: %w", key, err)
	}
	diffID, err := e.Layer.DiffID()
	if err != nil {
		return fmt.Errorf("cache put %s: %w", key, err)
	}
	rawCfg, err := json.Marshal(entryConfig{Key: key, CreatedBy: e.CreatedBy, Created: time.Now().UTC(), DiffID: diffID, Entries: toEntryHeaders(e.Headers)})
	if err != nil {
		return fmt.Errorf("cache put %s: %w", key, err)
	}
	cfgDesc := v1.Descriptor{MediaType: ConfigMediaType, Size: int64(len(rawCfg)), Digest: sha(rawCfg)}
	raw, err := json.Marshal(v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        cfgDesc,
		Layers:        []v1.Descriptor{*ld},
	})
	if err != nil {
		return fmt.Errorf("cache put %s: %w", key, err)
	}
	md := v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: int64(len(raw)), Digest: sha(raw)}
	if err := writeBlobs(l.st, rawCfg, raw); err != nil {
		return fmt.Errorf("cache put %s: %w", key, err)
	}
	return l.st.SetCacheRef(key, md)
}

// writeBlobs stores small blobs at once: each is synced before its ref is
// written, and the file system commits fsyncs that wait together in one
// go, where one after the other each waits for a commit of its own.
func writeBlobs(st *store.Store, blobs ...[]byte) error {
	var g errgroup.Group
	for _, b := range blobs {
		g.Go(func() error { return st.WriteBlob(sha(b), bytes.NewReader(b)) })
	}
	return g.Wait()
}

func (l *Local) readBlob(h v1.Hash, limit int64) ([]byte, error) {
	rc, err := l.st.OpenBlob(h)
	if err != nil {
		return nil, err
	}
	return readVerified(rc, h, limit)
}

// parseManifest parses an entry's manifest: one layer, a kiln config.
func parseManifest(raw []byte, key string) (*v1.Manifest, error) {
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("cache entry %s: malformed manifest", key)
	}
	if m.Config.MediaType != ConfigMediaType || len(m.Layers) != 1 {
		return nil, fmt.Errorf("cache entry %s is not a kiln step-cache entry", key)
	}
	return &m, nil
}

// parseConfig parses an entry's config, which must name key.
func parseConfig(raw []byte, key string) (*entryConfig, error) {
	var cfg entryConfig
	if err := json.Unmarshal(raw, &cfg); err != nil || cfg.Key != key {
		return nil, fmt.Errorf("cache entry %s: malformed config", key)
	}
	return &cfg, nil
}

// readVerified reads at most limit bytes of rc (and closes it), which must
// have digest h.
func readVerified(rc io.ReadCloser, h v1.Hash, limit int64) ([]byte, error) {
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("blob %s is larger than %d bytes", h, limit)
	}
	if sha(b) != h {
		return nil, fmt.Errorf("blob %s does not match its digest", h)
	}
	return b, nil
}

// missOrErr turns a missing blob into a miss (nil error).
func missOrErr(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func sha(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// Prune removes the entries not used since before (all of them when before
// is the zero time) and returns how many it removed. Their layers go at
// the store's next GC unless an image still uses them.
func (l *Local) Prune(before time.Time) (int, error) {
	refs, err := l.st.CacheRefs()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range refs {
		if !before.IsZero() && !r.Used.Before(before) {
			continue
		}
		if err := l.st.RemoveCacheRef(r.Key); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
