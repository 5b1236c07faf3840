package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path"
	"reflect"
	"strings"
	"testing"
)

// stackAndTree makes the IndexStack of layers and the tree ApplyIndex
// makes of them.
func stackAndTree(t *testing.T, layers ...[]IndexEntry) (*IndexStack, *Tree) {
	t.Helper()
	xs := make([]*LayerIndex, len(layers))
	for i, es := range layers {
		xs[i] = &LayerIndex{Entries: es}
	}
	s, err := NewIndexStack(xs)
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTree()
	for i, x := range xs {
		if err := tr.ApplyIndex(i, x); err != nil {
			t.Fatal(err)
		}
	}
	return s, tr
}

// sameLookup reports how the stack's answer for p differs from the tree's
// ("" when it does not).
func sameLookup(s *IndexStack, tr *Tree, p string) string {
	got, gok := s.Lookup(p)
	want, wok := tr.Lookup(p)
	switch {
	case gok != wok:
		return fmt.Sprintf("%q: found %v, the tree says %v", p, gok, wok)
	case !gok:
		return ""
	case got.Path != want.Path || got.Layer != want.Layer || !reflect.DeepEqual(got.Header, want.Header):
		return fmt.Sprintf("%q: %+v, the tree has %+v", p, *got, *want)
	}
	return ""
}

func ie(name string, typ byte, mode int64) IndexEntry {
	return IndexEntry{Name: name, Type: typ, Mode: mode}
}

// The cases a COPY destination meets in a base: whiteouts, opaque
// directories, symlinked parents, types replaced from layer to layer.
func TestIndexStackLookup(t *testing.T) {
	t.Parallel()
	l0 := []IndexEntry{
		ie("./", tar.TypeDir, 0o755), ie("./usr/", tar.TypeDir, 0o755), ie("./usr/bin/", tar.TypeDir, 0o755),
		{Name: "./bin", Type: tar.TypeSymlink, Link: "usr/bin"}, ie("./usr/bin/sh", tar.TypeReg, 0o755),
		ie("./opt/", tar.TypeDir, 0o700), ie("./opt/app/", tar.TypeDir, 0o755), ie("./opt/app/f", tar.TypeReg, 0o644),
		ie("./gone/", tar.TypeDir, 0o755), ie("./gone/f", tar.TypeReg, 0o644),
		ie("./was-file", tar.TypeReg, 0o644), ie("./was-dir/", tar.TypeDir, 0o711), ie("./was-dir/x", tar.TypeReg, 0o644),
	}
	l1 := []IndexEntry{
		ie("gone/.wh..wh..opq", tar.TypeReg, 0), ie("./.wh.gone", tar.TypeReg, 0),
		ie("opt/.wh..wh..opq", tar.TypeReg, 0), ie("opt/new", tar.TypeReg, 0o600),
		ie("was-file/", tar.TypeDir, 0o750), ie("was-file/in", tar.TypeReg, 0o644),
		{Name: "was-dir", Type: tar.TypeSymlink, Link: "/opt"},
		ie("implied/deep/f", tar.TypeReg, 0o644),
	}
	l2 := []IndexEntry{
		ie("opt/", tar.TypeDir, 0o777),
		ie("gone/back", tar.TypeReg, 0o644),
	}
	s, tr := stackAndTree(t, l0, l1, l2)
	for p, want := range map[string]string{
		"/":             "dir 755",
		"/bin":          "symlink usr/bin",
		"/bin/sh":       "absent", // no symlink followed
		"/usr/bin/sh":   "file 755",
		"/opt":          "dir 777",
		"/opt/app":      "absent",
		"/opt/new":      "file 600",
		"/gone":         "dir 755", // implied again by gone/back
		"/gone/f":       "absent",
		"/gone/back":    "file 644",
		"/was-file":     "dir 750",
		"/was-file/in":  "file 644",
		"/was-dir":      "symlink /opt",
		"/was-dir/x":    "absent",
		"/implied":      "dir 755",
		"/implied/deep": "dir 755",
		"/nothing":      "absent",
	} {
		n, ok := s.Lookup(p)
		got := "absent"
		if ok {
			switch n.Header.Typeflag {
			case tar.TypeDir:
				got = fmt.Sprintf("dir %o", n.Header.Mode)
			case tar.TypeSymlink:
				got = "symlink " + n.Header.Linkname
			default:
				got = fmt.Sprintf("file %o", n.Header.Mode)
			}
		}
		if got != want {
			t.Errorf("%s: %s, want %s", p, got, want)
		}
		if d := sameLookup(s, tr, p); d != "" {
			t.Error(d)
		}
	}
	if _, err := s.Tree(); err != nil {
		t.Fatal(err)
	}
	if d := sameLookup(s, tr, "/opt/new"); d != "" { // now from the tree
		t.Error(d)
	}
}

// What ApplyIndex refuses, NewIndexStack refuses, whatever is asked later.
func TestIndexStackRefuses(t *testing.T) {
	t.Parallel()
	for _, es := range [][]IndexEntry{
		{ie("../etc/passwd", tar.TypeReg, 0o644)},
		{ie("a/.wh..", tar.TypeReg, 0)},
		{ie("./", tar.TypeReg, 0o644)},
		{{Name: "a", Type: tar.TypeLink, Link: "../../x"}},
		{{Name: "a", Type: tar.TypeLink, Link: "/"}},
	} {
		x := &LayerIndex{Entries: es}
		if err := NewTree().ApplyIndex(0, x); err == nil {
			t.Fatalf("ApplyIndex accepted %+v", es)
		}
		if _, err := NewIndexStack([]*LayerIndex{{}, x}); err == nil || !strings.Contains(err.Error(), "layer 1") {
			t.Errorf("NewIndexStack of %+v: %v", es, err)
		}
	}
}

// Random stacks over a few names: every path's answer is the tree's.
func TestIndexStackMatchesTree(t *testing.T) {
	t.Parallel()
	names := []string{"a", "b", "c"}
	var paths []string
	var add func(prefix string, depth int)
	add = func(prefix string, depth int) {
		if depth == 0 {
			return
		}
		for _, n := range names {
			p := n
			if prefix != "" {
				p = prefix + "/" + n
			}
			paths = append(paths, p)
			add(p, depth-1)
		}
	}
	add("", 3)
	r := rand.New(rand.NewPCG(1, 2))
	pick := func() string { return paths[r.IntN(len(paths))] }
	form := func(p string) string {
		switch r.IntN(4) {
		case 0:
			return "./" + p
		case 1:
			return "/" + p
		}
		return p
	}
	for iter := 0; iter < 3000; iter++ {
		layers := make([][]IndexEntry, 1+r.IntN(4))
		for li := range layers {
			n := r.IntN(10)
			for j := 0; j < n; j++ {
				p := pick()
				e := IndexEntry{Name: form(p), Mode: int64(r.IntN(8)) * 0o111, UID: r.IntN(3), MTime: int64(li*100 + j)}
				switch k := r.IntN(12); {
				case k < 3:
					e.Type = tar.TypeDir
					if r.IntN(2) == 0 {
						e.Name += "/"
					}
				case k < 6:
					e.Type = tar.TypeReg
				case k < 7:
					e.Type, e.Link = tar.TypeSymlink, pick()
				case k < 8:
					e.Type, e.Link = tar.TypeLink, form(pick())
				case k < 10:
					e.Type = tar.TypeReg
					dir, base := "", p
					if i := strings.LastIndexByte(p, '/'); i >= 0 {
						dir, base = p[:i+1], p[i+1:]
					}
					e.Name = form(dir + WhiteoutPrefix + base)
				case k < 11:
					e.Type = tar.TypeReg
					e.Name = form(p + "/" + OpaqueWhiteout)
				default:
					e.Type = 'V' // ignored
					if r.IntN(2) == 0 {
						e.Type, e.Name = tar.TypeDir, "./"
					}
				}
				layers[li] = append(layers[li], e)
			}
		}
		s, tr := stackAndTree(t, layers...)
		for _, p := range append(paths, "", "a/b/c/a") {
			if d := sameLookup(s, tr, p); d != "" {
				t.Fatalf("stack %d: %s\nlayers: %+v", iter, d, layers)
			}
		}
	}
}

// debianLikeIndex is an index of n entries shaped like a Debian base's.
func debianLikeIndex(n int) *LayerIndex {
	x := &LayerIndex{DiffID: diffIDOf([]byte("debian")), Entries: []IndexEntry{{Name: "./", Type: tar.TypeDir, Mode: 0o755}}}
	for i := 0; len(x.Entries) < n; i++ {
		d := fmt.Sprintf("./usr/share/doc/package-%d/", i)
		x.Entries = append(x.Entries, IndexEntry{Name: d, Type: tar.TypeDir, Mode: 0o755, MTime: 1700000000000000000})
		for j := 0; j < 12 && len(x.Entries) < n; j++ {
			x.Entries = append(x.Entries, IndexEntry{Name: fmt.Sprintf("%sfile-%d.gz", d, j), Type: tar.TypeReg, Mode: 0o644, Size: int64(1000 + j), MTime: 1700000000000000000})
		}
	}
	return x
}

// What a build pays to answer three questions about a base of 9,000
// files from its encoded index: decoding it, then a lookup each (the
// stack) or the tree of every entry.
func BenchmarkIndexLookup(b *testing.B) {
	x := debianLikeIndex(9000)
	enc, err := x.Encode()
	if err != nil {
		b.Fatal(err)
	}
	var v1buf bytes.Buffer
	zw := gzip.NewWriter(&v1buf)
	json.NewEncoder(zw).Encode(indexFile{Version: 1, DiffID: x.DiffID.String(), Entries: x.Entries})
	zw.Close()
	paths := []string{"/application", "/usr/share/doc", "/usr/share/doc/package-100/file-3.gz"}
	for _, c := range []struct {
		name  string
		data  []byte
		stack bool
	}{{"format2/stack", enc, true}, {"format2/tree", enc, false}, {"format1/tree", v1buf.Bytes(), false}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d, err := DecodeIndex(c.data, x.DiffID)
				if err != nil {
					b.Fatal(err)
				}
				if c.stack {
					s, err := NewIndexStack([]*LayerIndex{d})
					if err != nil {
						b.Fatal(err)
					}
					for _, p := range paths {
						s.Lookup(p)
					}
					continue
				}
				t := NewTree()
				if err := t.ApplyIndex(0, d); err != nil {
					b.Fatal(err)
				}
				for _, p := range paths {
					t.Lookup(p)
				}
			}
		})
	}
}

// cleanPath's fast path gives what path.Clean gives.
func TestCleanPathForms(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"", ".", "..", "./", "/", "//", "./usr/bin/", "usr/bin", "/usr/bin", "usr//bin", "usr/./bin", "usr/../bin",
		"./.", "./..", "a/.", "a/..", "../a", "./../a", ".//a", "a/", "a//", ".a", "..a", "a..", "a/.b", "a/..b/", "././a", "/./a/"} {
		if got, want := cleanPath(p), path.Clean("/" + p)[1:]; got != want {
			t.Errorf("cleanPath(%q) = %q, want %q", p, got, want)
		}
	}
}
