package build

import (
	"context"
	"sort"

	"github.com/kiln-build/kiln/pkg/cache"
)

// WORKDIR's directories are dated with the build's time (--timestamp, else
// when the build started), as BuildKit's mkdir dates them, not 1970. That
// time is in the layer, so its exact key (copy_cache.go) changes with
// every build; the store's step cache keeps a WORKDIR layer by its content
// key instead (the directories' names, modes and owners), so that a
// rebuild takes the layer it made before, as BuildKit's cache does, and
// pushes nothing new; with a registry step cache (--cache-to/--cache-from)
// it goes there too, so a fresh pod takes it as well. --no-cache makes a
// new one.

// addWorkdirLayer adds the layer of WORKDIR's entries, from the step cache
// when it holds one with the same directories.
func (s *stageState) addWorkdirLayer(ctx context.Context, entries []*copyEntry, createdBy string, wrap func(error) error) error {
	if s.b.opts.Cache == nil || s.b.opts.Timestamp != nil {
		return s.addLayer(ctx, entries, createdBy, wrap)
	}
	byDest := map[string]*copyEntry{}
	for _, e := range entries {
		if e.dest != "/" {
			byDest[e.dest] = e
		}
	}
	sorted := make([]*copyEntry, 0, len(byDest))
	for _, e := range byDest {
		sorted = append(sorted, e)
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].dest < sorted[j].dest })
	keys, complete := s.statEntries(sorted)
	if !complete {
		return s.addLayer(ctx, entries, createdBy, wrap)
	}
	key, err := cache.Key(cache.KindWorkdir, s.copyInputs(keys.content))
	if err != nil {
		return s.addLayer(ctx, entries, createdBy, wrap)
	}
	if e := s.lookupLocal(ctx, key, createdBy); e != nil {
		s.takeCached(e.Layer, keys.content, createdBy, sorted)
		return nil
	}
	if s.b.opts.CacheCopies {
		if e := s.lookupCache(ctx, key, s.stageTag(), "writing the layer", createdBy); e != nil {
			s.takeCached(e.Layer, keys.content, createdBy, sorted)
			return nil
		}
	}
	n := len(s.pending)
	if err := s.addLayer(ctx, entries, createdBy, wrap); err != nil {
		return err
	}
	if len(s.pending) == n {
		return nil // taken from the cache by its exact key
	}
	l, err := s.pending[len(s.pending)-1].wait()
	if err != nil {
		return nil // the stage reports it when it waits for its layers
	}
	var put func(context.Context, string, cache.Entry) error = cache.NewLocal(s.b.opts.Store).Put
	if s.b.opts.CacheCopies {
		put = s.b.opts.Cache.Put // the registry cache too (--cache-to)
	}
	if err := put(ctx, key, cache.Entry{Layer: l, CreatedBy: createdBy}); err != nil {
		s.b.opts.Progress.Warnf(s.stageTag(), "step cache: %v", err)
	}
	return nil
}
