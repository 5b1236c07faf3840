package build

import (
	"context"
	"strings"

	"github.com/kiln-build/kiln/pkg/cache"
)

// copyInputs is what a COPY or ADD layer depends on, for its cache key:
// its entries and their content (the content key, without times), and the
// layer format. Not the layers below: the entries are already resolved
// against them, and the layer's bytes depend on nothing else.
type copyInputs struct {
	Content     string `json:"content"`
	Compression string `json:"compression"`
	Format      string `json:"format"`
	Timestamp   int64  `json:"timestamp,omitempty"`
}

func (s *stageState) copyKey(contentKey string) (string, error) {
	in := copyInputs{Content: contentKey, Compression: string(s.b.opts.Compression), Format: string(s.b.opts.Format)}
	if s.b.opts.Timestamp != nil {
		in.Timestamp = s.b.opts.Timestamp.Unix()
	}
	return cache.Key("copy", in)
}

// hashEntries computes the content key of the layer sorted would make (as
// writeLayer does while writing), reading every file once.
func (s *stageState) hashEntries(ctx context.Context, sorted []*copyEntry) (string, error) {
	ch := newContentHasher()
	buf := make([]byte, 1<<20)
	for _, e := range sorted {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		h := layerHeader(e)
		ch.header(h)
		if err := copyContent(ch, e, h, buf); err != nil {
			return "", err
		}
	}
	return ch.sum(), nil
}

// cachedCopy takes a COPY/ADD layer from the step cache when it has one.
func (s *stageState) cachedCopy(ctx context.Context, key, contentKey, createdBy string, sorted []*copyEntry) (bool, error) {
	e := s.lookupCache(ctx, key, "["+s.stageTag()+"]", "writing the layer", strings.TrimSpace(createdBy))
	if e == nil {
		return false, nil
	}
	s.cleanTemp()
	s.layers = append(s.layers, e.Layer)
	if s.b.keyed {
		s.links = append(s.links, chainLink{key: "layer " + contentKey})
	}
	s.noteEntries(sorted)
	s.history(createdBy, false)
	return true, nil
}
