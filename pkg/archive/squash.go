package archive

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SquashOptions control Squash.
type SquashOptions struct {
	// OverBase says the squashed layer goes on top of other layers that
	// stay (podman's --squash): what the squashed layers deleted or
	// replaced below them is kept as whiteouts and opaque markers, and
	// hard links may point into them. Without it the layer is a whole
	// filesystem (--squash-all). Directories the layers only implied (no
	// entry of their own) are not written in either case.
	OverBase bool
	// TempDir holds the content of large files between reading and
	// writing ("" = the system's).
	TempDir string
}

// squashSmall is the largest file content Squash keeps in memory, and
// squashMemory the most it keeps in all; the rest is spooled to TempDir.
const (
	squashSmall  = 64 << 10
	squashMemory = 64 << 20
)

// squashScan is what Squash learns from the layers' headers.
type squashScan struct {
	// explicit: paths some layer has an entry for (not only implied as a
	// parent of one).
	explicit map[string]bool
	// whited: paths a whiteout deleted; reset: paths whose lower content
	// a layer hid (a whiteout, an opaque marker, a non-directory
	// replacing whatever was there).
	whited, reset map[string]bool
	// regular: the headers of regular files by content source, for a
	// hard-linked file whose first name is gone.
	regular map[[2]int]*tar.Header
}

// Squash writes to tw the one layer that the stack layers (bottom first)
// makes: whiteouts and opaque markers applied, later entries overriding
// earlier ones, hard links kept where their target is still the file they
// were made against and written as that file otherwise. The entries come
// in path order, directories before their contents. Each layer is read
// twice (headers, then the content of what survives); file content is
// held in memory or TempDir in between.
func Squash(tw *TarWriter, layers []Opener, opts SquashOptions) error {
	t := NewTree()
	sc := &squashScan{explicit: map[string]bool{}, whited: map[string]bool{}, reset: map[string]bool{}, regular: map[[2]int]*tar.Header{}}
	for i, open := range layers {
		if err := applyOpener(t, i, open); err != nil {
			return fmt.Errorf("squash: %w", err)
		}
		if err := sc.scanLayer(i, open); err != nil {
			return fmt.Errorf("squash: layer %d: %w", i, err)
		}
	}
	items, err := sc.items(t, opts.OverBase)
	if err != nil {
		return fmt.Errorf("squash: %w", err)
	}
	// One content per source: the first name (in output order) carries
	// it, the others link to that name.
	first := map[[2]int]string{}
	var reps []string
	for _, it := range items {
		if it.src == nil {
			continue
		}
		if _, ok := first[*it.src]; !ok {
			first[*it.src] = it.path
			reps = append(reps, it.path)
		}
	}
	sp := &squashSpool{dir: opts.TempDir, data: map[string][]byte{}, files: map[string]string{}}
	defer sp.close()
	if err := t.ReadFiles(layers, reps, sp.keep); err != nil {
		return fmt.Errorf("squash: %w", err)
	}
	for _, it := range items {
		if err := sc.write(tw, it, first, sp); err != nil {
			return fmt.Errorf("squash: %s: %w", it.path, err)
		}
	}
	return nil
}

// scanLayer reads layer i's headers into sc.
func (sc *squashScan) scanLayer(i int, open Opener) error {
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for idx := 0; ; idx++ {
		hdr, err := nextHeader(tr)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
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
			continue
		case plainWhiteout:
			sc.whited[target], sc.reset[target] = true, true
			continue
		case opaqueMarker:
			sc.reset[target] = true
			continue
		}
		typ, ok := fileType(hdr.Typeflag)
		if !ok {
			continue
		}
		sc.explicit[p] = true
		if typ != tar.TypeDir {
			sc.reset[p] = true
		}
		if typ == tar.TypeReg {
			h := *hdr
			h.Typeflag = tar.TypeReg
			sc.regular[[2]int{i, idx}] = &h
		}
	}
}

// squashItem is one entry of the squashed layer: a node of the merged
// tree, an opaque marker or a whiteout.
type squashItem struct {
	path string
	node *Node
	src  *[2]int // content source of a regular file or hard link
	kind whiteoutKind
}

// items lists the squashed layer's entries in output order.
func (sc *squashScan) items(t *Tree, overBase bool) ([]squashItem, error) {
	var items []squashItem
	err := t.Walk("", func(n *Node) error {
		if n.Path == "" && !sc.explicit[""] {
			return nil
		}
		if !sc.explicit[n.Path] {
			return nil // implied: extraction makes it as the layers' would
		}
		it := squashItem{path: n.Path, node: n}
		if e := t.lookupEntry(n.Path); e != nil && e.hasSrc && (n.Header.Typeflag == tar.TypeReg || n.Header.Typeflag == tar.TypeLink) {
			src := [2]int{e.src.layer, e.src.index}
			it.src = &src
		} else if n.Header.Typeflag == tar.TypeLink {
			// A link to a file of a layer below the squashed ones: kept
			// while that file is untouched.
			if !overBase || sc.touched(t, n.Header.Linkname) {
				return fmt.Errorf("hard link %q: its target %q is not the file it was made against", n.Path, n.Header.Linkname)
			}
		}
		items = append(items, it)
		if overBase && n.IsDir() && sc.reset[n.Path] {
			items = append(items, squashItem{path: joinPath(n.Path, OpaqueWhiteout), kind: opaqueMarker})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if overBase {
		for p := range sc.whited {
			if sc.whiteoutNeeded(t, p) {
				items = append(items, squashItem{path: joinPath(parentPath(p), WhiteoutPrefix+pathBase(p)), kind: plainWhiteout})
			}
		}
	}
	slices.SortFunc(items, func(a, b squashItem) int { return comparePaths(a.path, b.path) })
	return items, nil
}

// touched reports whether the squashed layers changed p or a directory
// above it.
func (sc *squashScan) touched(t *Tree, p string) bool {
	if _, ok := t.Lookup(p); ok {
		return true
	}
	for q := p; ; q = parentPath(q) {
		if sc.reset[q] {
			return true
		}
		if q == "" {
			return false
		}
	}
}

// whiteoutNeeded reports whether the deleted path p needs a whiteout over
// the base: it is still gone and nothing above it already hides it (a
// deleted, replaced or opaque directory).
func (sc *squashScan) whiteoutNeeded(t *Tree, p string) bool {
	if _, ok := t.Lookup(p); ok {
		return false
	}
	for q := parentPath(p); ; q = parentPath(q) {
		if n, ok := t.Lookup(q); ok {
			if !n.IsDir() || sc.reset[q] {
				return false
			}
		} else if sc.whited[q] {
			return false
		}
		if q == "" {
			return true
		}
	}
}

// write writes one item.
func (sc *squashScan) write(tw *TarWriter, it squashItem, first map[[2]int]string, sp *squashSpool) error {
	if it.kind != notWhiteout {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: it.path, Format: tar.FormatPAX, ModTime: time.Unix(0, 0)})
	}
	h := it.node.Header
	name := it.path
	if name == "" {
		name = "."
	}
	if it.src == nil {
		h.Name = name
		if h.Typeflag == tar.TypeDir && name != "." {
			h.Name += "/"
		}
		return tw.WriteHeader(&h)
	}
	rep := first[*it.src]
	if rep != it.path {
		h.Typeflag, h.Linkname, h.Name, h.Size = tar.TypeLink, rep, name, 0
		return tw.WriteHeader(&h)
	}
	if h.Typeflag == tar.TypeLink {
		// The file this name links to is gone by that name: this name
		// carries it, with the file's own header.
		orig := sc.regular[*it.src]
		if orig == nil {
			return fmt.Errorf("no header for the content of layer %d entry %d", it.src[0], it.src[1])
		}
		h = *orig
	}
	h.Name, h.Linkname = name, ""
	r, size, err := sp.open(it.path)
	if err != nil {
		return err
	}
	defer r.Close()
	h.Size = size
	if err := tw.WriteHeader(&h); err != nil {
		return err
	}
	if _, err := io.Copy(tw, r); err != nil {
		return err
	}
	return nil
}

// squashSpool holds file content between ReadFiles and writing.
type squashSpool struct {
	dir   string
	mem   int64
	data  map[string][]byte
	files map[string]string
	tmp   string
}

func (sp *squashSpool) keep(n *Node, r io.Reader) error {
	small, err := io.ReadAll(io.LimitReader(r, squashSmall+1))
	if err != nil {
		return err
	}
	if len(small) <= squashSmall && sp.mem+int64(len(small)) <= squashMemory {
		sp.mem += int64(len(small))
		sp.data[n.Path] = small
		return nil
	}
	if sp.tmp == "" {
		d, err := os.MkdirTemp(sp.dir, "squash-")
		if err != nil {
			return err
		}
		sp.tmp = d
	}
	name := filepath.Join(sp.tmp, strconv.Itoa(len(sp.files)))
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, io.MultiReader(bytes.NewReader(small), r))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	sp.files[n.Path] = name
	return nil
}

func (sp *squashSpool) open(p string) (io.ReadCloser, int64, error) {
	if b, ok := sp.data[p]; ok {
		return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
	}
	name, ok := sp.files[p]
	if !ok {
		return nil, 0, fmt.Errorf("content not read")
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

func (sp *squashSpool) close() {
	if sp.tmp != "" {
		os.RemoveAll(sp.tmp)
	}
}

// pathBase is the last component of a clean relative path.
func pathBase(p string) string {
	return p[strings.LastIndexByte(p, '/')+1:]
}

// comparePaths orders clean relative paths component by component, so
// that a directory comes right before its contents ("" first).
func comparePaths(a, b string) int {
	for {
		ca, ra, moreA := strings.Cut(a, "/")
		cb, rb, moreB := strings.Cut(b, "/")
		if c := strings.Compare(ca, cb); c != 0 {
			return c
		}
		switch {
		case !moreA && !moreB:
			return 0
		case !moreA:
			return -1
		case !moreB:
			return 1
		}
		a, b = ra, rb
	}
}
