package archive

import (
	"archive/tar"
	"fmt"
	"sync"
	"sync/atomic"
)

// IndexStack answers questions about the merged files of a stack of
// layers from their indexes one path at a time, without the Tree of every
// entry: a build asks about a handful of paths of a base of thousands of
// files. Lookup gives what Tree.Lookup on the tree ApplyIndex builds from
// the same indexes gives (whiteouts, opaque directories, replaced types,
// implied parents), and Tree builds that tree when all of it is needed
// (COPY --from an image). Its methods may be called concurrently.
type IndexStack struct {
	layers []*preparedIndex

	treeOnce sync.Once
	tree     *Tree
	treeErr  error
	ready    atomic.Pointer[Tree] // tree, once made
	xs       []*LayerIndex
}

// preparedIndex is one layer's entries with what applyEntry would make of
// each name, checked once.
type preparedIndex struct {
	x     *LayerIndex
	paths []string       // clean path of each entry (the whiteout's own)
	kinds []whiteoutKind // of each entry
	// targets: a plain whiteout's hidden path, an opaque marker's
	// directory.
	targets []string
	skip    []bool // entries applyEntry ignores (types kiln does not handle)
}

// NewIndexStack makes the stack of xs, bottom (layer 0) first. An entry
// that ApplyIndex would refuse (a name that climbs above the root, an
// invalid whiteout or hardlink, a root that is not a directory) is an
// error here too, whatever path is asked about later.
func NewIndexStack(xs []*LayerIndex) (*IndexStack, error) {
	s := &IndexStack{xs: xs, layers: make([]*preparedIndex, len(xs))}
	for i, x := range xs {
		p, err := prepareIndex(x)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		s.layers[i] = p
	}
	return s, nil
}

func prepareIndex(x *LayerIndex) (*preparedIndex, error) {
	n := len(x.Entries)
	p := &preparedIndex{x: x, paths: make([]string, n), kinds: make([]whiteoutKind, n), targets: make([]string, n), skip: make([]bool, n)}
	for i := range x.Entries {
		e := &x.Entries[i]
		cp, err := cleanReadName(e.Name)
		if err != nil {
			return nil, err
		}
		kind, target, err := parseWhiteout(cp, e.Name)
		if err != nil {
			return nil, err
		}
		p.paths[i], p.kinds[i], p.targets[i] = cp, kind, target
		if kind != notWhiteout {
			p.skip[i] = kind == metaWhiteout
			continue
		}
		typ, ok := fileType(e.Type)
		if !ok {
			p.skip[i] = true
			continue
		}
		if cp == "" && typ != tar.TypeDir {
			return nil, fmt.Errorf("entry %q: the root can only be a directory", e.Name)
		}
		if typ == tar.TypeLink {
			if ln, err := cleanReadName(e.Link); err != nil || ln == "" {
				return nil, fmt.Errorf("entry %q: invalid hardlink target %q", e.Name, e.Link)
			}
		}
	}
	return p, nil
}

// Tree returns the merged tree of every entry (ApplyIndex of each layer),
// made on first call.
func (s *IndexStack) Tree() (*Tree, error) {
	s.treeOnce.Do(func() {
		t := NewTree()
		for i, x := range s.xs {
			if err := t.ApplyIndex(i, x); err != nil {
				s.treeErr = err
				return
			}
		}
		s.tree = t
		s.ready.Store(t)
	})
	return s.tree, s.treeErr
}

// Lookup returns the node at p ("/a/b", "a/b" and "./a/b" are the same
// path), following no symlinks, as the merged tree would.
//
// The node at p depends only on the entries at p and at its parents, the
// whiteouts and opaque markers that hide one of those, and whether a layer
// has entries below p (which imply p as a directory and keep it from its
// own layer's whiteouts); of a run of entries below p only the first
// matters. Those entries, in layer and stream order, are applied to an
// empty tree: what it holds at p is what the whole tree holds there.
func (s *IndexStack) Lookup(p string) (*Node, bool) {
	p = cleanPath(p)
	if t := s.readyTree(); t != nil {
		return t.Lookup(p)
	}
	t := NewTree()
	for li, l := range s.layers {
		t.gen++
		below := false // the last entry applied was one below p
		for i, cp := range l.paths {
			if l.skip[i] {
				continue
			}
			var rel pathRelation
			switch l.kinds[i] {
			case plainWhiteout:
				if rel = relationOf(l.targets[i], p); rel == relBelow {
					rel = relNone // hides nothing at p or above
				}
			case opaqueMarker:
				if rel = relationOf(l.targets[i], p); rel != relAbove {
					rel = relNone // an opaque p keeps p
				}
			default:
				rel = relationOf(cp, p)
			}
			switch {
			case rel == relNone:
				continue
			case rel == relBelow && below:
				continue
			}
			below = rel == relBelow
			if err := t.applyEntry(li, i, l.x.Entries[i].Header()); err != nil {
				return nil, false // NewIndexStack checked every entry
			}
		}
	}
	return t.Lookup(p)
}

// readyTree is the whole tree when Tree made it already.
func (s *IndexStack) readyTree() *Tree { return s.ready.Load() }

type pathRelation int

const (
	relNone  pathRelation = iota
	relSelf               // the entry's path is p
	relAbove              // a parent of p (the root included)
	relBelow              // below p
)

// relationOf relates the clean path q of an entry to the clean path p.
func relationOf(q, p string) pathRelation {
	switch {
	case q == p:
		return relSelf
	case q == "":
		return relAbove
	case p == "":
		return relBelow
	case len(q) < len(p) && p[len(q)] == '/' && p[:len(q)] == q:
		return relAbove
	case len(q) > len(p) && q[len(p)] == '/' && q[:len(p)] == p:
		return relBelow
	}
	return relNone
}
