package build

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/dockerfile"
	"github.com/kiln-build/kiln/pkg/store"
)

// openers gives an uncompressed reader per layer; a remote layer is only
// downloaded when its opener is called. Every layer this build did not make
// is verified as it streams (digest and size against the manifest, diff ID
// against the config) and kept in the store once verified: a registry that
// serves other bytes for a digest fails the read, naming the blob, and
// nothing it sent is used.
func openers(st *store.Store, layers []v1.Layer) []archive.Opener {
	out := make([]archive.Opener, len(layers))
	for i, l := range layers {
		if _, own := l.(*futureLayer); own || st == nil {
			out[i] = l.Uncompressed
			continue
		}
		out[i] = func() (io.ReadCloser, error) {
			diffID, err := l.DiffID()
			if err != nil {
				return nil, err
			}
			return st.OpenVerifiedLayer(l, diffID)
		}
	}
	return out
}

// spoolDir makes a directory for content spooled for the step being built
// (files of image layers, ADD archives and downloads): in the store's temp
// area, private, flocked while this process lives and removed with the
// step's other spools. A kiln killed meanwhile leaves it unlocked, and the
// next kiln command on the store (or prune) removes it.
func (s *stageState) spoolDir() (string, error) {
	dir, release, err := s.b.opts.Store.ShortLivedDir()
	if err != nil {
		return "", err
	}
	s.tempDirs = append(s.tempDirs, release)
	return dir, nil
}

// stageRef finds the earlier stage from names (by name or index), or nil
// and the name to look up as a named context or image: from itself, or
// the name of a stage a directory context replaced.
func (s *stageState) stageRef(from string) (*dockerfile.Stage, string) {
	dep := s.plan.StageByRef(from, s.run.stage)
	if dep != nil && dep.ByDir {
		return nil, dep.Name
	}
	return dep, from
}

// fromSource opens what COPY --from names: an earlier stage (by name or
// index) or an image.
func (s *stageState) fromSource(ctx context.Context, from string) (sourceFS, error) {
	st := s.run.stage
	if dep, name := s.stageRef(from); dep != nil {
		run := s.states[dep]
		if run == nil || run.result == nil {
			return nil, fmt.Errorf("COPY --from=%s: stage not built", from)
		}
		return &treeFS{s: s, src: run.result.source, name: fmt.Sprintf("stage %q", from)}, nil
	} else {
		from = name
	}
	if strings.EqualFold(from, st.Name) && st.Name != "" {
		return nil, fmt.Errorf("COPY --from=%s: a stage cannot copy from itself", from)
	}
	if fsys, ok, err := s.b.namedContextFS(from); ok {
		return fsys, err
	}
	src, err := s.b.image(ctx, from, s.platform)
	if err != nil {
		return nil, fmt.Errorf("COPY --from=%s: %w", from, err)
	}
	return &treeFS{s: s, src: src, name: "image " + from}, nil
}

// treeFS reads an image's merged layers.
type treeFS struct {
	s    *stageState
	src  *imageSource
	name string
}

func (f *treeFS) describe() string     { return f.name }
func (f *treeFS) notFoundHint() string { return "" }

// tree is the image's files, from its layers' indexes.
func (f *treeFS) tree() (*archive.Tree, error) {
	return f.src.indexTree(f.s.b.ctx, f.s.b, f.s.stageTag(), "COPY --from reads the "+f.name)
}

func (f *treeFS) match(src string) ([]string, error) {
	t, err := f.tree()
	if err != nil {
		return nil, err
	}
	if !hasGlob(src) {
		p, n, err := t.Resolve("/" + src)
		if err != nil {
			return nil, err
		}
		if n == nil {
			return nil, nil
		}
		return []string{strings.TrimPrefix(p, "/")}, nil
	}
	parts := strings.Split(src, "/")
	cur := []string{""}
	for i, comp := range parts {
		var next []string
		for _, dir := range cur {
			if !hasGlob(comp) {
				p := joinRel(dir, comp)
				if i < len(parts)-1 {
					rp, n, err := t.Resolve("/" + p)
					if err != nil || n == nil {
						continue
					}
					p = strings.TrimPrefix(rp, "/")
				} else if _, ok := t.Lookup("/" + p); !ok {
					continue
				}
				next = append(next, p)
				continue
			}
			children, err := childNames(t, dir)
			if err != nil {
				return nil, err
			}
			for _, c := range children {
				ok, err := path.Match(comp, c)
				if err != nil {
					return nil, fmt.Errorf("bad pattern %q: %w", src, err)
				}
				if !ok {
					continue
				}
				p := joinRel(dir, c)
				if i < len(parts)-1 {
					rp, n, err := t.Resolve("/" + p)
					if err != nil || n == nil {
						continue
					}
					p = strings.TrimPrefix(rp, "/")
				}
				next = append(next, p)
			}
		}
		cur = next
	}
	sort.Strings(cur)
	return cur, nil
}

func childNames(t *archive.Tree, dir string) ([]string, error) {
	var out []string
	prefix := dir
	if prefix != "" {
		prefix += "/"
	}
	err := t.Walk("/"+dir, func(n *archive.Node) error {
		if n.Path == dir {
			return nil
		}
		rest := strings.TrimPrefix(n.Path, prefix)
		if !strings.Contains(rest, "/") {
			out = append(out, rest)
		}
		return nil
	})
	return out, err
}

func (f *treeFS) follow(p string) (string, error) {
	t, err := f.tree()
	if err != nil {
		return "", err
	}
	r, _, err := t.Resolve("/" + p)
	if err != nil {
		return "", err
	}
	return strings.TrimPrefix(r, "/"), nil
}

func (f *treeFS) stat(p string) (*tar.Header, error) {
	t, err := f.tree()
	if err != nil {
		return nil, err
	}
	n, ok := t.Lookup("/" + p)
	if !ok {
		return nil, fmt.Errorf("%s: not found in the %s", p, f.name)
	}
	h := n.Header
	if h.Typeflag == tar.TypeLink {
		// A hardlink copied on its own becomes a regular file.
		target, ok := t.Lookup("/" + h.Linkname)
		if ok {
			h.Typeflag, h.Size, h.Linkname = tar.TypeReg, target.Header.Size, ""
		}
	}
	return &h, nil
}

func (f *treeFS) open(p string) opener { return nil } // filled in by spoolTreeContent

func (f *treeFS) walk(root string, exclude *dockerfile.Matcher, fn func(string, *tar.Header, opener, string) error) error {
	t, err := f.tree()
	if err != nil {
		return err
	}
	prefix := root
	if prefix != "" {
		prefix += "/"
	}
	var skip []string
	return t.Walk("/"+root, func(n *archive.Node) error {
		if n.Path == root {
			return nil
		}
		for _, s := range skip {
			if strings.HasPrefix(n.Path, s+"/") {
				return nil
			}
		}
		rel := strings.TrimPrefix(n.Path, prefix)
		if ex, err := exclude.Excluded(rel); err != nil {
			return err
		} else if ex {
			if n.Header.Typeflag == tar.TypeDir {
				skip = append(skip, n.Path)
			}
			return nil
		}
		h := n.Header
		h.Name = rel
		if h.Typeflag == tar.TypeLink {
			target := h.Linkname
			if strings.HasPrefix(target, prefix) || root == "" {
				h.Linkname = strings.TrimPrefix(target, prefix)
				return fn(rel, &h, nil, "")
			}
			tn, ok := t.Lookup("/" + target)
			if !ok {
				return fmt.Errorf("%s: hardlink to missing %s", n.Path, target)
			}
			h.Typeflag, h.Size, h.Linkname = tar.TypeReg, tn.Header.Size, ""
		}
		tp := ""
		if h.Typeflag == tar.TypeReg {
			tp = n.Path
		}
		return fn(rel, &h, nil, tp)
	})
}

// spoolTreeContent reads the content of entries that come from image
// layers: each needed layer is streamed once, the files land in a
// temporary directory and the entries open them from there.
func (s *stageState) spoolTreeContent(from string, entries []*copyEntry) error {
	var wanted []string
	byPath := map[string][]*copyEntry{}
	for _, e := range entries {
		if e.treePath == "" || e.hdr.Typeflag != tar.TypeReg {
			continue
		}
		if _, ok := byPath[e.treePath]; !ok {
			wanted = append(wanted, "/"+e.treePath)
		}
		byPath[e.treePath] = append(byPath[e.treePath], e)
	}
	if len(wanted) == 0 {
		return nil
	}
	fsys, err := s.fromSource(context.Background(), from)
	if err != nil {
		return err
	}
	tf := fsys.(*treeFS)
	t, err := tf.tree()
	if err != nil {
		return err
	}
	dir, err := s.spoolDir()
	if err != nil {
		return err
	}
	i := 0
	err = t.ReadFiles(openers(tf.src.st, tf.src.layers), wanted, func(n *archive.Node, r io.Reader) error {
		i++
		name := filepath.Join(dir, fmt.Sprint(i))
		out, err := os.Create(name)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, r); err != nil {
			out.Close()
			return fmt.Errorf("reading %s from the %s: %w", n.Path, tf.name, err)
		}
		if err := out.Close(); err != nil {
			return err
		}
		for _, e := range byPath[strings.TrimPrefix(n.Path, "/")] {
			e.open = func() (io.ReadCloser, error) { return os.Open(name) }
		}
		return nil
	})
	if err != nil {
		return err
	}
	for p, es := range byPath {
		for _, e := range es {
			if e.open == nil {
				return fmt.Errorf("%s: content not found in the %s", p, tf.name)
			}
		}
	}
	return nil
}
