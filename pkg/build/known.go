package build

import (
	"archive/tar"
	"context"
	"path"
	"strings"

	"github.com/kiln-build/kiln/pkg/archive"
)

// knownTree records what the layers this build made hold, so that later
// steps see the directories, files and symlinks they made without reading
// any layer. Paths are absolute and clean. What it does not decide is
// looked up in the stage's base image (stageState.lookupPath), whose files
// are known from its layers' path indexes.
type knownTree struct {
	// entries are this build's entries; the parents of an entry are
	// directories (implied entries, mode 0755, when the build wrote none:
	// they exist in the base or were made by this build).
	entries map[string]*tar.Header
	// gone are paths a RUN layer whited out: the base's entries there
	// (and below) are hidden.
	gone map[string]bool
	// opaque are directories below which the base holds nothing: made by
	// this build where nothing was, or opaque in a RUN layer.
	opaque map[string]bool
	// scratch is true when nothing lies below (FROM scratch): then an
	// unknown path is known to be missing.
	scratch bool
	// base is the stage's base image (nil for scratch), looked up for
	// what entries, gone and opaque do not decide.
	base *imageSource
}

func newKnownTree() *knownTree {
	return &knownTree{entries: map[string]*tar.Header{}, gone: map[string]bool{}, opaque: map[string]bool{}}
}

func (k *knownTree) clone() *knownTree {
	c := &knownTree{
		entries: make(map[string]*tar.Header, len(k.entries)),
		gone:    make(map[string]bool, len(k.gone)),
		opaque:  make(map[string]bool, len(k.opaque)),
		scratch: k.scratch,
		base:    k.base,
	}
	for p, h := range k.entries {
		c.entries[p] = h
	}
	for p := range k.gone {
		c.gone[p] = true
	}
	for p := range k.opaque {
		c.opaque[p] = true
	}
	return c
}

// add records an entry of a new layer.
func (k *knownTree) add(p string, h *tar.Header) {
	p = path.Clean("/" + p)
	k.entries[p] = h
	if k.gone[p] {
		// Made again after a whiteout: what the base had is still hidden.
		delete(k.gone, p)
		if h.Typeflag == tar.TypeDir {
			k.opaque[p] = true
		}
	}
	// Parents of an entry exist (as directories, or as symlinks we know).
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		if k.gone[d] {
			delete(k.gone, d)
			k.opaque[d] = true
		}
		if _, ok := k.entries[d]; ok {
			continue
		}
		k.entries[d] = &tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}
	}
}

// remove records a whiteout of p.
func (k *knownTree) remove(p string) {
	for q := range k.entries {
		if q == p || strings.HasPrefix(q, p+"/") {
			delete(k.entries, q)
		}
	}
	for q := range k.opaque {
		if q == p || strings.HasPrefix(q, p+"/") {
			delete(k.opaque, q)
		}
	}
	k.gone[p] = true
}

// makeOpaque records an opaque directory: the lower layers' entries below
// it are hidden (entries of the same layer are added afterwards).
func (k *knownTree) makeOpaque(d string) {
	for q := range k.entries {
		if strings.HasPrefix(q, d+"/") {
			delete(k.entries, q)
		}
	}
	for q := range k.gone {
		if strings.HasPrefix(q, d+"/") {
			delete(k.gone, q)
		}
	}
	k.opaque[d] = true
}

// applyLayer records the tar headers of a layer (a RUN step's diff):
// whiteouts and opaque markers first (they hide only lower layers), then
// the entries. The headers become the tree's (their names are made
// absolute): 50,000 of a RUN step are not held twice.
func (k *knownTree) applyLayer(hdrs []*tar.Header) {
	for _, h := range hdrs {
		p := path.Clean("/" + h.Name)
		dir, base := path.Split(p)
		switch {
		case base == archive.OpaqueWhiteout:
			k.makeOpaque(path.Clean(dir))
		case strings.HasPrefix(base, archive.WhiteoutPrefix+archive.WhiteoutPrefix):
		case strings.HasPrefix(base, archive.WhiteoutPrefix):
			k.remove(path.Join(dir, strings.TrimPrefix(base, archive.WhiteoutPrefix)))
		}
	}
	for _, h := range hdrs {
		p := path.Clean("/" + h.Name)
		if p == "/" || strings.HasPrefix(path.Base(p), archive.WhiteoutPrefix) {
			continue
		}
		h.Name = p
		k.add(p, h)
	}
}

// lookup answers from this build's layers alone: the entry at p (no
// symlinks followed), or decided == false when only the base can tell.
func (k *knownTree) lookup(p string) (h *tar.Header, decided bool) {
	if p == "/" {
		return rootDirHeader(), true
	}
	if h, ok := k.entries[p]; ok {
		return h, true
	}
	for d := p; d != "/"; d = path.Dir(d) {
		if k.gone[d] {
			return nil, true
		}
	}
	for d := path.Dir(p); ; d = path.Dir(d) {
		if k.opaque[d] {
			return nil, true
		}
		if d == "/" {
			break
		}
	}
	if k.scratch {
		return nil, true
	}
	return nil, false
}

func rootDirHeader() *tar.Header {
	return &tar.Header{Typeflag: tar.TypeDir, Name: "/", Mode: 0o755}
}

// lookupPath returns the entry at the clean absolute path p of the stage's
// filesystem (no symlinks followed), nil when nothing is there. What this
// build's layers do not decide is looked up in the base image's path
// index, made (and reported) on first need; why says what needs it.
func (s *stageState) lookupPath(ctx context.Context, p, why string) (*tar.Header, error) {
	if h, decided := s.known.lookup(p); decided {
		return h, nil
	}
	if s.known.base == nil {
		return nil, nil
	}
	answers := s.known.base.answers(s.b)
	if h, ok := answers.lookup(p); ok {
		return h, nil
	}
	if h, guessed, err := s.guessBase(ctx, p, why); err != nil || guessed {
		return h, err
	}
	st, err := s.known.base.indexStack(ctx, s.b, s.stageTag(), why)
	if err != nil {
		return nil, err
	}
	n, ok := st.Lookup(p)
	if !ok {
		answers.remember(p, nil)
		return nil, nil
	}
	h := n.Header
	h.Name = p
	answers.remember(p, &h)
	return &h, nil
}
