package archive

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
)

// spoolInMemory is the largest content ReadFiles keeps in memory when more
// than one wanted path shares it; larger content goes to a temp file.
const spoolInMemory = 4 << 20

// ReadFiles calls fn with the content of each wanted regular file or
// hardlink (which gives its target's content) of the tree. It opens each
// layer that provides at least one of them exactly once, bottom to top, and
// streams it; fn is called in that order (layer, then tar order), once per
// distinct path. paths are looked up without following symlinks (use
// Resolve first); a missing path or one that is not a regular file or
// hardlink is an error before any layer is opened. The reader given to fn
// is valid only during the call.
func (t *Tree) ReadFiles(layers []Opener, paths []string, fn func(n *Node, r io.Reader) error) error {
	bySrc := map[[2]int]*readGroup{}
	seen := map[string]bool{}
	for _, raw := range paths {
		p := cleanPath(raw)
		if seen[p] {
			continue
		}
		seen[p] = true
		e := t.lookupEntry(p)
		if e == nil {
			return fmt.Errorf("read %q: %w", raw, fs.ErrNotExist)
		}
		switch e.node.Header.Typeflag {
		case tar.TypeReg, tar.TypeLink:
		default:
			return fmt.Errorf("read %q: not a regular file (type %q)", raw, string(e.node.Header.Typeflag))
		}
		if !e.hasSrc {
			return fmt.Errorf("read %q: %s", raw, e.linkDesc)
		}
		if e.src.layer < 0 || e.src.layer >= len(layers) || layers[e.src.layer] == nil {
			return fmt.Errorf("read %q: layer %d has no opener", raw, e.src.layer)
		}
		key := [2]int{e.src.layer, e.src.index}
		g := bySrc[key]
		if g == nil {
			g = &readGroup{src: e.src}
			bySrc[key] = g
		}
		g.nodes = append(g.nodes, &e.node)
	}

	byLayer := map[int]map[int]*readGroup{}
	for key, g := range bySrc {
		if byLayer[key[0]] == nil {
			byLayer[key[0]] = map[int]*readGroup{}
		}
		byLayer[key[0]][key[1]] = g
	}
	for _, layer := range slices.Sorted(maps.Keys(byLayer)) {
		if err := readLayerFiles(layer, layers[layer], byLayer[layer], fn); err != nil {
			return err
		}
	}
	return nil
}

// readGroup is the wanted nodes that share one content source.
type readGroup struct {
	src   contentSource
	nodes []*Node
}

// readLayerFiles streams one layer and delivers the entries at the wanted
// ordinals, stopping once all have been seen.
func readLayerFiles(layer int, open Opener, want map[int]*readGroup, fn func(n *Node, r io.Reader) error) error {
	rc, err := open()
	if err != nil {
		return fmt.Errorf("layer %d: open: %w", layer, err)
	}
	if err := readLayerEntries(layer, rc, want, fn); err != nil {
		rc.Close()
		return err
	}
	// A verifying reader reads the rest and reports a mismatch when it is
	// closed: content delivered from a layer that fails is not to be used.
	if err := rc.Close(); err != nil {
		return fmt.Errorf("layer %d: %w", layer, err)
	}
	return nil
}

func readLayerEntries(layer int, rc io.Reader, want map[int]*readGroup, fn func(n *Node, r io.Reader) error) error {
	tr := tar.NewReader(rc)
	left := len(want)
	for idx := 0; left > 0; idx++ {
		hdr, err := nextHeader(tr)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("layer %d: read tar: %w", layer, err)
		}
		g, ok := want[idx]
		if !ok {
			continue
		}
		left--
		if p, err := cleanReadName(hdr.Name); err != nil || p != g.src.path {
			return fmt.Errorf("layer %d: entry %d is %q, want %q: the layer changed since it was read", layer, idx, hdr.Name, g.src.path)
		}
		if err := deliver(g.nodes, hdr, tr, fn); err != nil {
			return err
		}
	}
	if left > 0 {
		return fmt.Errorf("layer %d: stream ended before all wanted entries: the layer changed since it was read", layer)
	}
	return nil
}

// deliver gives the content r (of the entry hdr) to fn for every node; if
// there is more than one, the content is spooled first.
func deliver(nodes []*Node, hdr *tar.Header, r io.Reader, fn func(n *Node, r io.Reader) error) error {
	if len(nodes) == 1 {
		if err := fn(nodes[0], r); err != nil {
			return fmt.Errorf("read %q: %w", nodes[0].Path, err)
		}
		return nil
	}
	var open func() (io.Reader, error)
	if hdr.Size <= spoolInMemory {
		data, err := io.ReadAll(r)
		if err != nil {
			return fmt.Errorf("read %q: %w", hdr.Name, err)
		}
		open = func() (io.Reader, error) { return bytes.NewReader(data), nil }
	} else {
		f, err := os.CreateTemp("", "kiln-spool-*")
		if err != nil {
			return fmt.Errorf("read %q: spool: %w", hdr.Name, err)
		}
		defer os.Remove(f.Name())
		defer f.Close()
		n, err := io.Copy(f, r)
		if err != nil {
			return fmt.Errorf("read %q: spool: %w", hdr.Name, err)
		}
		open = func() (io.Reader, error) { return io.NewSectionReader(f, 0, n), nil }
	}
	for _, node := range nodes {
		r, err := open()
		if err != nil {
			return err
		}
		if err := fn(node, r); err != nil {
			return fmt.Errorf("read %q: %w", node.Path, err)
		}
	}
	return nil
}

// isAncestor reports whether the clean path a is a strict ancestor of the
// clean path p ("" is everything's ancestor).
func isAncestor(a, p string) bool {
	if a == "" {
		return p != ""
	}
	return len(p) > len(a) && p[len(a)] == '/' && strings.HasPrefix(p, a)
}

// FindFile looks up one path (for example /etc/passwd) in a stack of layers
// (bottom first) lazily: it opens layers from the top down and stops at the
// first layer that decides p, one with an entry for p, a whiteout of p or
// of an ancestor, an opaque marker in an ancestor, or a non-directory
// ancestor; the layers below it are never opened. No symlinks are
// followed. For a regular file, content is read, up to maxSize bytes
// (negative: no limit; a larger file is an error). For a hardlink, hdr is
// the link's own header and content is its target's, found in the same
// layer or, failing that, below it.
func FindFile(layers []Opener, p string, maxSize int64) (hdr *tar.Header, content []byte, found bool, err error) {
	target := cleanPath(p)
	if target == "" {
		return nil, nil, false, fmt.Errorf("find %q: the root is not a file", p)
	}
	for i := len(layers) - 1; i >= 0; i-- {
		res, err := scanLayerFor(layers[i], i, target, maxSize, false)
		if err != nil {
			return nil, nil, false, fmt.Errorf("find %q: %w", p, err)
		}
		if res.hidden && res.hdr == nil {
			return nil, nil, false, nil
		}
		if res.hdr == nil {
			continue
		}
		if res.hdr.Typeflag != tar.TypeLink {
			return res.hdr, res.content, true, nil
		}
		content, err := hardlinkContent(layers, i, res.hdr, maxSize)
		if err != nil {
			return nil, nil, false, fmt.Errorf("find %q: %w", p, err)
		}
		return res.hdr, content, true, nil
	}
	return nil, nil, false, nil
}

// hardlinkContent finds the content of the hardlink hdr of layer i: its
// target in layer i itself, or else as the layers below have it.
func hardlinkContent(layers []Opener, i int, hdr *tar.Header, maxSize int64) ([]byte, error) {
	res, err := scanLayerFor(layers[i], i, hdr.Linkname, maxSize, true)
	if err != nil {
		return nil, err
	}
	var th *tar.Header
	content := res.content
	if res.hdr != nil {
		th = res.hdr
	} else {
		var found bool
		th, content, found, err = FindFile(layers[:i], hdr.Linkname, maxSize)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, fmt.Errorf("hardlink %q: target %q does not exist", hdr.Name, hdr.Linkname)
		}
	}
	if th.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("hardlink %q: target %q is not a regular file", hdr.Name, hdr.Linkname)
	}
	return content, nil
}

type scanResult struct {
	hdr     *tar.Header // the last entry for the path, if any
	content []byte
	hidden  bool // a whiteout, opaque marker or non-directory hides lower layers' entry
}

// scanLayerFor reads one layer looking for what decides target. With
// regularOnly, only a regular file entry counts (hardlink resolution).
func scanLayerFor(open Opener, layer int, target string, maxSize int64, regularOnly bool) (scanResult, error) {
	var res scanResult
	if open == nil {
		return res, fmt.Errorf("layer %d: nil opener", layer)
	}
	rc, err := open()
	if err != nil {
		return res, fmt.Errorf("layer %d: open: %w", layer, err)
	}
	res, err = scanEntries(rc, layer, target, maxSize, regularOnly)
	if cerr := rc.Close(); err == nil && cerr != nil {
		// A verifying reader reports a mismatch when it is closed.
		return res, fmt.Errorf("layer %d: %w", layer, cerr)
	}
	return res, err
}

func scanEntries(rc io.Reader, layer int, target string, maxSize int64, regularOnly bool) (scanResult, error) {
	var res scanResult
	tr := tar.NewReader(rc)
	for {
		h, err := nextHeader(tr)
		if err == io.EOF {
			return res, nil
		}
		if err != nil {
			return res, fmt.Errorf("layer %d: read tar: %w", layer, err)
		}
		q, err := cleanReadName(h.Name)
		if err != nil {
			return res, fmt.Errorf("layer %d: %w", layer, err)
		}
		kind, wt, err := parseWhiteout(q, h.Name)
		if err != nil {
			return res, fmt.Errorf("layer %d: %w", layer, err)
		}
		switch kind {
		case metaWhiteout:
			continue
		case plainWhiteout:
			if wt == target || isAncestor(wt, target) {
				res.hidden = true
			}
			continue
		case opaqueMarker:
			if isAncestor(wt, target) {
				res.hidden = true
			}
			continue
		}
		typ, ok := fileType(h.Typeflag)
		if !ok {
			continue
		}
		if isAncestor(q, target) && typ != tar.TypeDir {
			res.hidden = true
			continue
		}
		if q != target {
			continue
		}
		c := *h
		c.Name = q
		c.Typeflag = typ
		if regularOnly && c.Typeflag != tar.TypeReg {
			continue
		}
		res.hdr, res.content = &c, nil
		switch c.Typeflag {
		case tar.TypeReg:
			if maxSize >= 0 && c.Size > maxSize {
				return res, fmt.Errorf("layer %d: %q is %d bytes, more than the %d allowed", layer, q, c.Size, maxSize)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				return res, fmt.Errorf("layer %d: read %q: %w", layer, q, err)
			}
			res.content = data
		case tar.TypeLink:
			ln, err := cleanReadName(c.Linkname)
			if err != nil || ln == "" {
				return res, fmt.Errorf("layer %d: entry %q: invalid hardlink target %q", layer, h.Name, h.Linkname)
			}
			c.Linkname = ln
		}
	}
}
