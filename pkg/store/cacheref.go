package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// Cache refs name the manifests of step-cache entries (see pkg/cache) by
// their cache key. They live apart from index.json, one small file per key
// under cache/, so that a build with hundreds of steps never rewrites the
// image refs, and `images` never lists them. GC treats them as roots, like
// refs.

const cacheDirName = "cache"

func (s *Store) cachePath(key string) string {
	return filepath.Join(s.root, cacheDirName, key)
}

// checkCacheKey accepts 64 lowercase hex digits (a sha256), so that a key
// is always a safe file name.
func checkCacheKey(key string) error {
	if len(key) != 64 || !isHex(key) {
		return fmt.Errorf("malformed cache key %q", key)
	}
	return nil
}

// SetCacheRef points the cache key at the stored manifest d. Like Tag, it
// checks under the store lock that d and everything it references are in
// the store, so a cache ref never names a partial entry.
func (s *Store) SetCacheRef(key string, d v1.Descriptor) error {
	if err := checkCacheKey(key); err != nil {
		return err
	}
	data, err := json.Marshal(withoutRefAnnotations(d))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(s.root, cacheDirName), s.dirMode()); err != nil {
		return fmt.Errorf("cache ref %s: %w", key, err)
	}
	lk, err := lockFile(s.lockPath, unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer lk.unlock()
	if err := s.checkComplete(d); err != nil {
		return fmt.Errorf("cache ref %s: %w", key, err)
	}
	return s.writeFileAtomic(s.cachePath(key), data)
}

// CacheRef returns the manifest the cache key names; ok is false when there
// is none (or it was collected).
func (s *Store) CacheRef(key string) (d v1.Descriptor, ok bool, err error) {
	if err := checkCacheKey(key); err != nil {
		return v1.Descriptor{}, false, err
	}
	data, err := os.ReadFile(s.cachePath(key))
	if errors.Is(err, fs.ErrNotExist) {
		return v1.Descriptor{}, false, nil
	}
	if err != nil {
		return v1.Descriptor{}, false, fmt.Errorf("cache ref %s: %w", key, err)
	}
	if err := json.Unmarshal(data, &d); err != nil || checkHash(d.Digest) != nil {
		return v1.Descriptor{}, false, fmt.Errorf("cache ref %s in %s is malformed", key, s.root)
	}
	return d, true, nil
}

// cacheRoots lists the manifests cache refs name (GC's extra roots). A
// malformed cache ref file is skipped (it names nothing GC must keep).
func (s *Store) cacheRoots() ([]v1.Descriptor, error) {
	ents, err := os.ReadDir(filepath.Join(s.root, cacheDirName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []v1.Descriptor
	for _, e := range ents {
		if checkCacheKey(e.Name()) != nil {
			continue
		}
		d, ok, err := s.CacheRef(e.Name())
		if err != nil || !ok {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// CacheRefInfo is one cache ref: its key and when it was last set or used.
type CacheRefInfo struct {
	Key  string
	Used time.Time
}

// CacheRefs lists the cache refs.
func (s *Store) CacheRefs() ([]CacheRefInfo, error) {
	ents, err := os.ReadDir(filepath.Join(s.root, cacheDirName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []CacheRefInfo
	for _, e := range ents {
		if checkCacheKey(e.Name()) != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, CacheRefInfo{Key: e.Name(), Used: fi.ModTime()})
	}
	return out, nil
}

// TouchCacheRef records that the cache entry was used now (prune keeps
// recently used entries). Best effort.
func (s *Store) TouchCacheRef(key string) {
	if checkCacheKey(key) != nil {
		return
	}
	now := time.Now()
	_ = os.Chtimes(s.cachePath(key), now, now)
}

// RemoveCacheRef removes a cache ref; its blobs go at the next GC. A
// missing ref is not an error.
func (s *Store) RemoveCacheRef(key string) error {
	if err := checkCacheKey(key); err != nil {
		return err
	}
	lk, err := lockFile(s.lockPath, unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer lk.unlock()
	if err := os.Remove(s.cachePath(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing cache ref %s: %w", key, err)
	}
	return nil
}
