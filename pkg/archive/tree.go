package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
)

// Opener opens the UNCOMPRESSED tar stream of one layer. It may be called
// more than once; each call must return the same stream.
type Opener func() (io.ReadCloser, error)

// Node is one entry of a merged view over a stack of layers.
type Node struct {
	// Path is clean and relative, without a leading slash; "" is the root
	// directory.
	Path string
	// Header is a copy of the entry's header with Name == Path (directories
	// without a trailing slash). Old regular-file type flags are normalised
	// to tar.TypeReg; a hardlink keeps tar.TypeLink and a cleaned Linkname.
	Header tar.Header
	// Layer is the index (bottom = 0) of the layer whose entry this is;
	// for a regular file, the layer that provides its content.
	Layer int
}

// IsDir reports whether the node is a directory.
func (n *Node) IsDir() bool { return n.Header.Typeflag == tar.TypeDir }

// Tree is a merged view, headers only, of a stack of layers: whiteouts and
// opaque markers applied, later layers overriding earlier ones. It resolves
// paths and copies files out of images without unpacking them. A Tree is
// not safe for concurrent use while Apply runs; otherwise its read methods
// may be called concurrently. Nodes returned by its methods belong to the
// tree and must not be modified.
type Tree struct {
	root *treeEntry
	gen  int // number of Apply calls so far; entries touched by the current one carry it
}

type treeEntry struct {
	node     Node
	children map[string]*treeEntry // directories only
	gen      int                   // the Apply that last created, updated or traversed it
	// Content source of regular files and hardlinks: the layer and the
	// ordinal of the tar entry whose content this entry has.
	src      contentSource
	hasSrc   bool
	linkDesc string // for a hardlink without a source: why
}

type contentSource struct {
	layer int
	index int
	path  string // entry path at that ordinal, to check the stream
}

// NewTree returns an empty tree (scratch): only the root directory.
func NewTree() *Tree {
	return &Tree{root: newDirEntry("", -1, 0)}
}

func newDirEntry(p string, layer, gen int) *treeEntry {
	return &treeEntry{
		node: Node{
			Path:   p,
			Header: tar.Header{Typeflag: tar.TypeDir, Name: p, Mode: 0o755},
			Layer:  layer,
		},
		children: map[string]*treeEntry{},
		gen:      gen,
	}
}

// BuildTree reads each layer once, bottom (index 0) first, skipping file
// content, and returns their merged view. Missing parent directories are
// implied (mode 0755, owned by root).
func BuildTree(layers []Opener) (*Tree, error) {
	t := NewTree()
	for i, open := range layers {
		if err := applyOpener(t, i, open); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func applyOpener(t *Tree, i int, open Opener) error {
	if open == nil {
		return fmt.Errorf("layer %d: nil opener", i)
	}
	rc, err := open()
	if err != nil {
		return fmt.Errorf("layer %d: open: %w", i, err)
	}
	if err := t.Apply(i, rc); err != nil {
		rc.Close()
		return err
	}
	// A verifying reader reports a mismatch when it is closed.
	if err := rc.Close(); err != nil {
		return fmt.Errorf("layer %d: %w", i, err)
	}
	return nil
}

// nextHeader reads the next tar header. Names archive/tar considers
// insecure are returned as well: callers check names themselves.
func nextHeader(tr *tar.Reader) (*tar.Header, error) {
	hdr, err := tr.Next()
	if errors.Is(err, tar.ErrInsecurePath) && hdr != nil {
		return hdr, nil
	}
	return hdr, err
}

// Apply applies one more uncompressed layer tar on top of the tree, as
// layer number layer. Its whiteouts and opaque markers hide entries of the
// layers below (never entries of the same layer), then its entries are
// added; a directory over a directory keeps the lower one's children, any
// other entry replaces what was there. An entry below a non-directory
// replaces that non-directory with an implied directory. Names that climb
// above the root are refused.
func (t *Tree) Apply(layer int, r io.Reader) error {
	t.gen++
	tr := tar.NewReader(r)
	for idx := 0; ; idx++ {
		hdr, err := nextHeader(tr)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("layer %d: read tar: %w", layer, err)
		}
		if err := t.applyEntry(layer, idx, hdr); err != nil {
			return fmt.Errorf("layer %d: %w", layer, err)
		}
	}
}

func (t *Tree) applyEntry(layer, idx int, hdr *tar.Header) error {
	p, err := cleanReadName(hdr.Name)
	if err != nil {
		return err
	}
	kind, target, err := parseWhiteout(p, hdr.Name)
	if err != nil {
		return err
	}
	switch kind {
	case metaWhiteout:
		return nil
	case plainWhiteout:
		parent := t.lookupEntry(parentPath(target))
		if parent == nil || parent.children == nil {
			return nil
		}
		name := path.Base(target)
		if child, ok := parent.children[name]; ok && t.pruneLower(child) {
			delete(parent.children, name)
		}
		return nil
	case opaqueMarker:
		dir := t.lookupEntry(target)
		if dir == nil || dir.children == nil {
			return nil
		}
		for name, child := range dir.children {
			if t.pruneLower(child) {
				delete(dir.children, name)
			}
		}
		return nil
	}

	h := *hdr
	h.Name = p
	typ, ok := fileType(h.Typeflag)
	if !ok {
		return nil // not a file (Extract skips these too)
	}
	h.Typeflag = typ
	if p == "" {
		if h.Typeflag != tar.TypeDir {
			return fmt.Errorf("entry %q: the root can only be a directory", hdr.Name)
		}
		t.root.node.Header = h
		t.root.node.Layer = layer
		t.root.gen = t.gen
		return nil
	}
	if h.Typeflag == tar.TypeLink {
		ln, err := cleanReadName(h.Linkname)
		if err != nil || ln == "" {
			return fmt.Errorf("entry %q: invalid hardlink target %q", hdr.Name, h.Linkname)
		}
		h.Linkname = ln
	}

	parent := t.ensureDir(parentPath(p), layer)
	name := path.Base(p)
	old := parent.children[name]
	if h.Typeflag == tar.TypeDir && old != nil && old.children != nil {
		old.node.Header = h
		old.node.Layer = layer
		old.gen = t.gen
		return nil
	}
	e := &treeEntry{node: Node{Path: p, Header: h, Layer: layer}, gen: t.gen}
	switch h.Typeflag {
	case tar.TypeDir:
		e.children = map[string]*treeEntry{}
	case tar.TypeReg:
		e.src = contentSource{layer: layer, index: idx, path: p}
		e.hasSrc = true
	case tar.TypeLink:
		switch te := t.lookupEntry(h.Linkname); {
		case te == nil:
			e.linkDesc = fmt.Sprintf("hardlink %q: target %q does not exist", p, h.Linkname)
		case te.hasSrc:
			e.src, e.hasSrc = te.src, true
		case te.node.Header.Typeflag == tar.TypeLink:
			e.linkDesc = te.linkDesc
		default:
			e.linkDesc = fmt.Sprintf("hardlink %q: target %q is not a regular file", p, h.Linkname)
		}
	}
	parent.children[name] = e
	return nil
}

// ensureDir returns the directory entry at the clean path p, creating
// implied directories (and replacing non-directories) on the way, and
// marks every directory on the way as touched by the current Apply.
func (t *Tree) ensureDir(p string, layer int) *treeEntry {
	cur := t.root
	cur.gen = t.gen
	if p == "" {
		return cur
	}
	done := ""
	for _, c := range strings.Split(p, "/") {
		done = joinPath(done, c)
		next := cur.children[c]
		if next == nil || next.children == nil {
			next = newDirEntry(done, layer, t.gen)
			cur.children[c] = next
		}
		next.gen = t.gen
		cur = next
	}
	return cur
}

// pruneLower removes from e's subtree what came from layers below the one
// being applied, and reports whether e itself is to be removed.
func (t *Tree) pruneLower(e *treeEntry) bool {
	if e.gen != t.gen {
		return true
	}
	for name, child := range e.children {
		if t.pruneLower(child) {
			delete(e.children, name)
		}
	}
	return false
}

// lookupEntry returns the entry at the clean path p, following no symlinks.
func (t *Tree) lookupEntry(p string) *treeEntry {
	cur := t.root
	if p == "" {
		return cur
	}
	for _, c := range strings.Split(p, "/") {
		if cur.children == nil {
			return nil
		}
		cur = cur.children[c]
		if cur == nil {
			return nil
		}
	}
	return cur
}

// Lookup returns the node at p ("/a/b", "a/b" and "./a/b" are the same
// path), following no symlinks.
func (t *Tree) Lookup(p string) (*Node, bool) {
	e := t.lookupEntry(cleanPath(p))
	if e == nil {
		return nil, false
	}
	return &e.node, true
}

// maxSymlinkHops bounds symlink resolution, as Linux's MAXSYMLINKS does.
const maxSymlinkHops = 40

// Resolve resolves p in the tree the way the kernel would inside a chroot
// at the tree's root: symlinks are followed in every component (absolute
// targets from the root, relative ones from the link's directory) and ".."
// never climbs above the root. It returns the resolved clean path and its
// node. If the path does not exist, because its last component or an
// intermediate one is missing or an intermediate one is not a directory,
// the node is nil and so is the error; the path is then the resolved part
// joined with the rest. More than 40 symlinks is an error naming p.
func (t *Tree) Resolve(p string) (string, *Node, error) {
	var resolved []string // components of the resolved directory so far
	cur := t.root
	remaining := strings.Split(p, "/")
	hops := 0
	for len(remaining) > 0 {
		c := remaining[0]
		remaining = remaining[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(resolved) > 0 {
				resolved = resolved[:len(resolved)-1]
				cur = t.lookupEntry(strings.Join(resolved, "/"))
			}
			continue
		}
		var next *treeEntry
		if cur.children != nil {
			next = cur.children[c]
		}
		here := joinPath(strings.Join(resolved, "/"), c)
		if next == nil {
			return cleanPath(path.Join(append([]string{here}, remaining...)...)), nil, nil
		}
		if next.node.Header.Typeflag == tar.TypeSymlink {
			hops++
			if hops > maxSymlinkHops {
				return "", nil, fmt.Errorf("resolve %q: too many levels of symbolic links", p)
			}
			target := next.node.Header.Linkname
			if target == "" { // resolves to nothing, as on Linux
				return cleanPath(path.Join(append([]string{here}, remaining...)...)), nil, nil
			}
			if strings.HasPrefix(target, "/") {
				resolved = resolved[:0]
				cur = t.root
			}
			remaining = append(strings.Split(target, "/"), remaining...)
			continue
		}
		if next.children == nil && !onlyTrivial(remaining) {
			return cleanPath(path.Join(append([]string{here}, remaining...)...)), nil, nil
		}
		resolved = append(resolved, c)
		cur = next
	}
	return strings.Join(resolved, "/"), &cur.node, nil
}

// onlyTrivial reports whether the components are all "" or ".".
func onlyTrivial(cs []string) bool {
	for _, c := range cs {
		if c != "" && c != "." {
			return false
		}
	}
	return true
}

// Walk calls fn for the node at root (found without following symlinks)
// and then, depth first, for everything below it, the entries of each
// directory in byte-wise order of their names. If fn returns fs.SkipDir
// for a directory, its contents are skipped; any other error stops the
// walk and is returned.
func (t *Tree) Walk(root string, fn func(n *Node) error) error {
	e := t.lookupEntry(cleanPath(root))
	if e == nil {
		return fmt.Errorf("walk %q: %w", root, fs.ErrNotExist)
	}
	err := t.walk(e, fn)
	if errors.Is(err, fs.SkipDir) {
		return nil
	}
	return err
}

func (t *Tree) walk(e *treeEntry, fn func(n *Node) error) error {
	if err := fn(&e.node); err != nil {
		return err
	}
	if len(e.children) == 0 {
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(e.children)) {
		child := e.children[name]
		if err := t.walk(child, fn); err != nil {
			if errors.Is(err, fs.SkipDir) && child.children != nil {
				continue
			}
			return err
		}
	}
	return nil
}
