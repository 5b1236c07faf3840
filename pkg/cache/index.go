package cache

import (
	"context"
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Layer path indexes (pkg/archive.LayerIndex, encoded) are kept like step
// cache entries: an OCI manifest under a cache ref whose key is
// IndexKey(diffID), with a small config naming the layer and one blob, the
// encoded index. The store's GC keeps them as long as the ref; prune
// removes them with the step cache; --cache-to pushes the indexes a build
// used, and --cache-from finds them, so that a fresh store answers
// questions about a base image's files without downloading its layers.

// IndexConfigMediaType is the media type of an index entry's config.
const IndexConfigMediaType types.MediaType = "application/vnd.kiln.layer-index.config.v1+json"

// IndexMediaType is the media type of an encoded layer index (format 2,
// binary).
const IndexMediaType types.MediaType = "application/vnd.kiln.layer-index.v2+gzip"

// indexMediaTypeV1 is that of format 1 (JSON), which kiln still reads.
const indexMediaTypeV1 types.MediaType = "application/vnd.kiln.layer-index.v1+json+gzip"

// maxIndexBlob bounds an encoded index read back.
const maxIndexBlob = 128 << 20

// indexConfig is an index entry's config.
type indexConfig struct {
	Key    string  `json:"key"`
	DiffID v1.Hash `json:"diffID"`
}

// IndexKey is the cache key under which the index of the layer diffID is
// kept.
func IndexKey(diffID v1.Hash) string {
	k, err := Key(KindLayerIndex, diffID.String())
	if err != nil {
		panic(err) // a string always marshals
	}
	return k
}

// GetIndex returns the encoded index of the layer diffID, or nil when the
// store has none.
func (l *Local) GetIndex(ctx context.Context, diffID v1.Hash) ([]byte, error) {
	key := IndexKey(diffID)
	d, ok, err := l.st.CacheRef(key)
	if err != nil || !ok {
		return nil, err
	}
	raw, err := l.readBlob(d.Digest, 4<<20)
	if err != nil {
		return nil, missOrErr(err)
	}
	m, err := parseIndexManifest(raw, key)
	if err != nil {
		return nil, err
	}
	rawCfg, err := l.readBlob(m.Config.Digest, 1<<20)
	if err != nil {
		return nil, missOrErr(err)
	}
	if err := checkIndexConfig(rawCfg, key, diffID); err != nil {
		return nil, err
	}
	data, err := l.readBlob(m.Layers[0].Digest, maxIndexBlob)
	if err != nil {
		return nil, missOrErr(err)
	}
	l.st.TouchCacheRef(key)
	return data, nil
}

// PutIndex keeps the encoded index of the layer diffID.
func (l *Local) PutIndex(ctx context.Context, diffID v1.Hash, data []byte) error {
	key := IndexKey(diffID)
	rawCfg, err := json.Marshal(indexConfig{Key: key, DiffID: diffID})
	if err != nil {
		return err
	}
	cfgDesc := v1.Descriptor{MediaType: IndexConfigMediaType, Size: int64(len(rawCfg)), Digest: sha(rawCfg)}
	blob := v1.Descriptor{MediaType: IndexMediaType, Size: int64(len(data)), Digest: sha(data)}
	raw, err := json.Marshal(v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        cfgDesc,
		Layers:        []v1.Descriptor{blob},
	})
	if err != nil {
		return err
	}
	md := v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: int64(len(raw)), Digest: sha(raw)}
	if err := writeBlobs(l.st, data, rawCfg, raw); err != nil {
		return fmt.Errorf("layer index of %s: %w", diffID, err)
	}
	return l.st.SetCacheRef(key, md)
}

// GetIndex looks in the local store, then in each --cache-from repository
// (an index found there is copied into the store). An index found or
// kept is pushed by Export.
func (t *Tiered) GetIndex(ctx context.Context, diffID v1.Hash) ([]byte, error) {
	key := IndexKey(diffID)
	data, err := t.Local.GetIndex(ctx, diffID)
	if err != nil || data != nil {
		if data != nil {
			t.use(key)
		}
		return data, err
	}
	for _, r := range t.From {
		data, err := t.fetchIndex(ctx, r, key, diffID)
		if err != nil {
			t.warnf("cache %s: layer index of %s: %v", r.Name(), diffID, err)
			continue
		}
		if data != nil {
			t.use(key)
			return data, nil
		}
	}
	return nil, nil
}

// PutIndex keeps an index locally; Export pushes it.
func (t *Tiered) PutIndex(ctx context.Context, diffID v1.Hash, data []byte) error {
	if err := t.Local.PutIndex(ctx, diffID, data); err != nil {
		return err
	}
	t.use(IndexKey(diffID))
	return nil
}

func (t *Tiered) fetchIndex(ctx context.Context, r Remote, key string, diffID v1.Hash) ([]byte, error) {
	raw, err := r.Manifest(ctx, key)
	if err != nil || raw == nil {
		return nil, err
	}
	m, err := parseIndexManifest(raw, key)
	if err != nil {
		return nil, err
	}
	rc, err := r.Blob(ctx, m.Config.Digest)
	if err != nil {
		return nil, err
	}
	rawCfg, err := readVerified(rc, m.Config.Digest, 1<<20)
	if err != nil {
		return nil, err
	}
	if err := checkIndexConfig(rawCfg, key, diffID); err != nil {
		return nil, err
	}
	if rc, err = r.Blob(ctx, m.Layers[0].Digest); err != nil {
		return nil, err
	}
	data, err := readVerified(rc, m.Layers[0].Digest, maxIndexBlob)
	if err != nil {
		return nil, err
	}
	t.background(func() error {
		if err := t.Local.PutIndex(context.WithoutCancel(ctx), diffID, data); err != nil {
			return err
		}
		if d, ok, err := t.Local.st.CacheRef(key); err == nil && ok && sha(raw) == d.Digest {
			t.noteFetched(key, r.Name(), d.Digest)
		}
		return nil
	})
	return data, nil
}

func parseIndexManifest(raw []byte, key string) (*v1.Manifest, error) {
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("layer index %s: malformed manifest", key)
	}
	if m.Config.MediaType != IndexConfigMediaType || len(m.Layers) != 1 || (m.Layers[0].MediaType != IndexMediaType && m.Layers[0].MediaType != indexMediaTypeV1) {
		return nil, fmt.Errorf("%s is not a kiln layer index", key)
	}
	return &m, nil
}

func checkIndexConfig(raw []byte, key string, diffID v1.Hash) error {
	var cfg indexConfig
	if err := json.Unmarshal(raw, &cfg); err != nil || cfg.Key != key || cfg.DiffID != diffID {
		return fmt.Errorf("layer index %s: malformed config", key)
	}
	return nil
}
