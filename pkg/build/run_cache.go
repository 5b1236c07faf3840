package build

import (
	"context"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/cache"
)

// runKey is the step's key, once what it names by content is resolved.
func (s *stageState) runKey(ctx context.Context, st *runStep) (string, error) {
	if err := s.resolveKey(ctx, st); err != nil {
		return "", err
	}
	return st.Key()
}

// cachedRun looks the step up in the cache: on a hit the stage takes the
// cached layer as the step's result.
func (s *stageState) cachedRun(ctx context.Context, key, label, createdBy string) (bool, error) {
	if s.b.opts.Cache == nil || key == "" {
		return false, nil
	}
	e := s.lookupCache(ctx, key, s.stageTag()+" "+label, "running the step", strings.TrimPrefix(createdBy, "RUN "))
	if e == nil {
		return false, nil
	}
	s.layers = append(s.layers, e.Layer)
	s.links = append(s.links, chainLink{key: "run " + key})
	s.noteRunEntries(e.Headers)
	s.users = nil
	s.history(createdBy, false)
	return true, nil
}

// lookupCache asks the step cache for key. A hit is reported as the
// current step cached, "WHAT (layer …[, from REPO])"; a cache that fails
// is a warning about step (the step goes on as otherwise, said by
// instead), never an error.
func (s *stageState) lookupCache(ctx context.Context, key, step, instead, what string) *cache.Entry {
	e, err := s.b.opts.Cache.Get(ctx, key)
	if err != nil {
		s.b.opts.Progress.Warnf(step, "step cache: %v (%s)", err, instead)
		return nil
	}
	if e == nil {
		return nil
	}
	d, _ := e.Layer.Digest()
	from := ""
	if e.From != "" {
		from = ", from " + e.From
	}
	s.cached = true
	s.b.opts.Progress.Cached(s.step, fmt.Sprintf("%s (layer %s%s)", what, shortDigest(d), from))
	return e
}

func shortDigest(h v1.Hash) string {
	if len(h.Hex) < 12 {
		return h.String()
	}
	return h.Algorithm + ":" + h.Hex[:12]
}
