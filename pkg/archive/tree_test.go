package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"testing"
)

func buildTree(t testing.TB, layers ...[]byte) (*Tree, *countingLayers) {
	t.Helper()
	cl := newCountingLayers(layers...)
	tree, err := BuildTree(cl.openers())
	if err != nil {
		t.Fatalf("BuildTree: %v", err)
	}
	for i, n := range cl.opened() {
		if n != 1 {
			t.Fatalf("BuildTree opened layer %d %d times", i, n)
		}
	}
	return tree, cl
}

// treePaths lists every path of the tree with a one-letter type and the
// layer of its node.
func treePaths(t testing.TB, tree *Tree) []string {
	t.Helper()
	var out []string
	err := tree.Walk("/", func(n *Node) error {
		typ := map[byte]string{tar.TypeDir: "d", tar.TypeReg: "f", tar.TypeSymlink: "l", tar.TypeLink: "h"}[n.Header.Typeflag]
		out = append(out, fmt.Sprintf("%s %s@%d", typ, n.Path, n.Layer))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBuildTreeWhiteouts(t *testing.T) {
	l0 := mkTar(t,
		dir("etc/"), file("etc/passwd", "root:x:0:0\n"), file("etc/group", "root:x:0:\n"),
		file("usr/bin/sh", "#!sh"), symlink("bin", "usr/bin"),
		dir("var/lib/"), file("var/lib/a", "a"), file("var/lib/b/c", "c"),
		dir("gone/"), file("gone/f", "f"),
		dir("keep/"), file("keep/old", "old"),
	)
	l1 := mkTar(t,
		whiteout("etc/.wh.group"),
		file("etc/passwd", "root:x:0:0:new\n"),
		file("var/lib/x", "same layer, before the marker"),
		whiteout("var/lib/.wh..wh..opq"),
		file("var/lib/new", "n"),
		whiteout(".wh.gone"),
		file("keep/new", "new"),
		whiteout("keep/.wh.new"), // same layer: does not hide keep/new
		whiteout("keep/.wh..wh.plnk"),
		whiteout("nonexistent/.wh.thing"),
	)
	tree, _ := buildTree(t, l0, l1)
	got := treePaths(t, tree)
	want := []string{
		"d @-1",
		"l bin@0",
		"d etc@0", "f etc/passwd@1",
		"d keep@0", "f keep/new@1", "f keep/old@0",
		"d usr@0", "d usr/bin@0", "f usr/bin/sh@0",
		"d var@0", "d var/lib@0", "f var/lib/new@1", "f var/lib/x@1",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	n, ok := tree.Lookup("usr")
	if !ok || n.Header.Mode != 0o755 || n.Header.Uid != 0 || !n.IsDir() || n.Header.Name != "usr" {
		t.Errorf("implied dir usr: %+v", n)
	}
	n, _ = tree.Lookup("etc")
	if n.Header.Name != "etc" {
		t.Errorf("directory header name %q, want without slash", n.Header.Name)
	}
}

func TestTreeWhiteoutOfDirKeepsSameLayer(t *testing.T) {
	l0 := mkTar(t, file("d/old", "o"), file("d/sub/deep", "x"))
	l1 := mkTar(t, file("d/new", "n"), dir("d/sub/"), whiteout(".wh.d"))
	tree, _ := buildTree(t, l0, l1)
	got := treePaths(t, tree)
	want := []string{"d @-1", "d d@0", "f d/new@1", "d d/sub@1"}
	if !slices.Equal(got, want) {
		t.Fatalf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestTreeReplacement(t *testing.T) {
	l0 := mkTar(t,
		file("dir2file/a", "a"),
		file("file2dir", "f"),
		file("merge/a", "a"),
		symlink("lnk", "merge"),
		file("plain", "p"),
	)
	l1 := mkTar(t,
		file("dir2file", "now a file"),
		dir("file2dir/"), file("file2dir/x", "x"),
		tent{name: "merge/", typ: tar.TypeDir, mode: 0o700}, file("merge/b", "b"),
		file("lnk/under", "the symlink becomes a directory in the view"),
		file("plain/under", "so does a file"),
	)
	tree, _ := buildTree(t, l0, l1)
	got := treePaths(t, tree)
	want := []string{
		"d @-1",
		"f dir2file@1",
		"d file2dir@1", "f file2dir/x@1",
		"d lnk@1", "f lnk/under@1",
		"d merge@1", "f merge/a@0", "f merge/b@1",
		"d plain@1", "f plain/under@1",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n, _ := tree.Lookup("merge"); n.Header.Mode != 0o700 {
		t.Errorf("merged dir mode %o, want the upper header's 0700", n.Header.Mode)
	}
}

func TestTreeRefusesHostileNames(t *testing.T) {
	for _, tc := range []struct {
		layer []byte
		want  string
	}{
		{mkTar(t, file("../escape", "x")), "../escape"},
		{mkTar(t, file("a/../../escape", "x")), "a/../../escape"},
		{mkTar(t, whiteout("a/.wh..")), "a/.wh.."},
		{mkTar(t, whiteout(".wh.")), ".wh."},
		{mkTar(t, file(".", "root as a file")), `"."`},
		{mkTar(t, file("x", "x"), hardlink("y", "../x")), "y"},
		{[]byte("this is not a tar stream, it is far too short and wrong"), "layer 0"},
	} {
		_, err := BuildTree([]Opener{func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tc.layer)), nil }})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("BuildTree error %v, want one naming %q", err, tc.want)
		}
	}
	// Absolute names and "./" prefixes are relative to the root.
	tree, _ := buildTree(t, mkTar(t, file("/abs/file", "x"), file("./rel/./file", "y"), dir("./")))
	for _, p := range []string{"abs/file", "rel/file"} {
		if _, ok := tree.Lookup(p); !ok {
			t.Errorf("%s missing", p)
		}
	}
	openErr := errors.New("registry down")
	if _, err := BuildTree([]Opener{func() (io.ReadCloser, error) { return nil, openErr }}); !errors.Is(err, openErr) {
		t.Errorf("opener error not returned: %v", err)
	}
}

func TestTreeLookupForms(t *testing.T) {
	tree := NewTree()
	if err := tree.Apply(0, bytes.NewReader(mkTar(t, file("a/b", "x")))); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/a/b", "a/b", "./a/b", "a//b/", "/../a/b"} {
		n, ok := tree.Lookup(p)
		if !ok || n.Path != "a/b" {
			t.Errorf("Lookup(%q) = %+v, %v", p, n, ok)
		}
	}
	if n, ok := tree.Lookup("/"); !ok || n.Path != "" || !n.IsDir() {
		t.Errorf("Lookup(/) = %+v, %v", n, ok)
	}
	if _, ok := tree.Lookup("a/c"); ok {
		t.Error("Lookup(a/c) found something")
	}
	if _, ok := tree.Lookup("a/b/c"); ok {
		t.Error("Lookup below a file found something")
	}
	if n, ok := NewTree().Lookup(""); !ok || !n.IsDir() {
		t.Error("empty tree has no root")
	}
}

func TestTreeResolve(t *testing.T) {
	entries := []tent{
		file("usr/bin/sh", "sh"),
		file("usr/lib/libc.so", "libc"),
		symlink("bin", "usr/bin"),
		symlink("lib", "/usr/lib"),
		symlink("etc/alt", "../usr/bin/sh"),
		symlink("loop1", "loop2"),
		symlink("loop2", "/loop1"),
		symlink("self", "self"),
		symlink("escape", "../../../../usr"),
		symlink("dangle", "/nowhere/file"),
		symlink("usr/bin/abs", "/bin/sh"),
		symlink("dotlink", "."),
		{name: "empty", typ: tar.TypeSymlink},
	}
	// A chain of 40 links resolves; 41 is too many.
	for i := 0; i < 41; i++ {
		entries = append(entries, symlink(fmt.Sprintf("chain/%d", i), fmt.Sprintf("%d", i+1)))
	}
	entries = append(entries, file("chain/41", "end"))
	tree, _ := buildTree(t, mkTar(t, entries...))
	for _, tc := range []struct {
		in      string
		path    string
		found   bool
		errWant string
	}{
		{"/", "", true, ""},
		{"usr/bin/sh", "usr/bin/sh", true, ""},
		{"/bin/sh", "usr/bin/sh", true, ""},
		{"bin", "usr/bin", true, ""},
		{"lib/libc.so", "usr/lib/libc.so", true, ""},
		{"etc/alt", "usr/bin/sh", true, ""},
		{"bin/../lib/libc.so", "usr/lib/libc.so", true, ""},
		{"lib/../bin/sh", "usr/bin/sh", true, ""},
		{"../../../usr/bin/sh", "usr/bin/sh", true, ""},
		{"escape/bin/sh", "usr/bin/sh", true, ""},
		{"usr/bin/abs", "usr/bin/sh", true, ""},
		{"dotlink/dotlink/usr/bin/sh", "usr/bin/sh", true, ""},
		{"bin/missing", "usr/bin/missing", false, ""},
		{"dangle", "nowhere/file", false, ""},
		{"missing/x/y", "missing/x/y", false, ""},
		{"usr/bin/sh/x", "usr/bin/sh/x", false, ""},
		{"usr/bin/sh/", "usr/bin/sh", true, ""},
		{"chain/1", "chain/41", true, ""},
		{"chain/0", "", false, "chain/0"},
		{"loop1", "", false, "loop1"},
		{"empty/x", "empty/x", false, ""},
		{"self/x", "", false, "self/x"},
	} {
		p, n, err := tree.Resolve(tc.in)
		if tc.errWant != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errWant) {
				t.Errorf("Resolve(%q): error %v, want one naming %q", tc.in, err, tc.errWant)
			}
			continue
		}
		if err != nil {
			t.Errorf("Resolve(%q): %v", tc.in, err)
			continue
		}
		if p != tc.path || (n != nil) != tc.found {
			t.Errorf("Resolve(%q) = %q, found %v; want %q, found %v", tc.in, p, n != nil, tc.path, tc.found)
		}
		if n != nil && n.Path != p {
			t.Errorf("Resolve(%q): node path %q != %q", tc.in, n.Path, p)
		}
	}
}

func TestTreeWalk(t *testing.T) {
	tree, _ := buildTree(t, mkTar(t, file("b", ""), file("a-b", ""), file("a/c", ""), file("a/d/e", ""), file("B", "")))
	var got []string
	err := tree.Walk("", func(n *Node) error { got = append(got, n.Path); return nil })
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"", "B", "a", "a/c", "a/d", "a/d/e", "a-b", "b"}
	if !slices.Equal(got, want) {
		t.Fatalf("walk order %q, want %q", got, want)
	}
	got = nil
	err = tree.Walk("/", func(n *Node) error {
		got = append(got, n.Path)
		if n.Path == "a/d" {
			return fs.SkipDir
		}
		return nil
	})
	if err != nil || !slices.Equal(got, []string{"", "B", "a", "a/c", "a/d", "a-b", "b"}) {
		t.Fatalf("SkipDir: %q, %v", got, err)
	}
	got = nil
	if err := tree.Walk("/a", func(n *Node) error { got = append(got, n.Path); return nil }); err != nil || !slices.Equal(got, []string{"a", "a/c", "a/d", "a/d/e"}) {
		t.Fatalf("walk /a: %q, %v", got, err)
	}
	stop := errors.New("stop")
	if err := tree.Walk("", func(n *Node) error {
		if n.Path == "a/c" {
			return stop
		}
		return nil
	}); !errors.Is(err, stop) {
		t.Fatalf("walk error %v", err)
	}
	if err := tree.Walk("nope", func(*Node) error { return nil }); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("walk of a missing root: %v", err)
	}
}

func TestTreeReadFiles(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", (5<<20)/16)
	l0 := mkTar(t, file("a", "a from layer 0"), hardlink("old-a", "a"), file("lib/x", "x0"), file("big", big))
	l1 := mkTar(t, file("unrelated", "u"), file("a", "a from layer 1"))
	l2 := mkTar(t, file("lib/y", "y2"), hardlink("lib/y-link", "lib/y"), hardlink("lib/x-link", "lib/x"), hardlink("big2", "big"), hardlink("chain", "lib/y-link"))
	tree, cl := buildTree(t, l0, l1, l2)
	ops := cl.openers()
	before := cl.opened()

	got := map[string]string{}
	var order []string
	err := tree.ReadFiles(ops, []string{"/lib/y-link", "lib/y", "old-a", "a", "lib/x-link", "/a", "chain", "big", "big2"}, func(n *Node, r io.Reader) error {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		got[n.Path] = string(b)
		order = append(order, n.Path)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"lib/y-link": "y2", "lib/y": "y2", "chain": "y2",
		"old-a":      "a from layer 0", // the link keeps the content it had
		"a":          "a from layer 1",
		"lib/x-link": "x0",
		"big":        big, "big2": big,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %.40q, want %.40q", k, got[k], v)
		}
	}
	if len(order) != len(want) {
		t.Errorf("fn called %d times (%q), want once per distinct path (%d)", len(order), order, len(want))
	}
	after := cl.opened()
	for i := range after {
		if after[i]-before[i] != 1 {
			t.Errorf("layer %d opened %d times, want once", i, after[i]-before[i])
		}
	}
	// Layers are read bottom to top: everything from layer 0 comes first.
	if i := slices.Index(order, "a"); i < slices.Index(order, "old-a") || i < slices.Index(order, "big") {
		t.Errorf("order %q: layer 1 content before layer 0 content", order)
	}

	// Only the layers that provide wanted files are opened.
	before = cl.opened()
	if err := tree.ReadFiles(ops, []string{"lib/y"}, func(n *Node, r io.Reader) error { return nil }); err != nil {
		t.Fatal(err)
	}
	after = cl.opened()
	if after[0] != before[0] || after[1] != before[1] || after[2] != before[2]+1 {
		t.Errorf("reading lib/y opened layers %v -> %v, want only layer 2", before, after)
	}

	for _, tc := range []struct{ path, want string }{
		{"missing", "missing"},
		{"lib", "not a regular file"},
	} {
		err := tree.ReadFiles(ops, []string{tc.path}, func(*Node, io.Reader) error { return nil })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReadFiles(%q): error %v, want %q", tc.path, err, tc.want)
		}
	}
	boom := errors.New("boom")
	if err := tree.ReadFiles(ops, []string{"a"}, func(*Node, io.Reader) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("fn error not returned: %v", err)
	}
	if err := tree.ReadFiles(ops[:1], []string{"a"}, func(*Node, io.Reader) error { return nil }); err == nil {
		t.Error("ReadFiles with too few layers succeeded")
	}
	// A layer that changed since the tree was built is detected.
	changed := []Opener{ops[0], ops[1], func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(mkTar(t, file("other", "x")))), nil
	}}
	if err := tree.ReadFiles(changed, []string{"lib/y"}, func(*Node, io.Reader) error { return nil }); err == nil || !strings.Contains(err.Error(), "changed") {
		t.Errorf("changed layer: %v", err)
	}
	dangling, _ := buildTree(t, mkTar(t, hardlink("h", "nowhere")))
	if err := dangling.ReadFiles(nil, []string{"h"}, func(*Node, io.Reader) error { return nil }); err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Errorf("dangling hardlink: %v", err)
	}
}

func TestFindFile(t *testing.T) {
	l0 := mkTar(t, file("etc/passwd", "v0"), file("etc/group", "g0"), file("etc/shadow", "s0"), file("opt/x", "x0"), file("srv/y", "y0"), file("lnk/z", "z0"), file("same", "s0"))
	l1 := mkTar(t, whiteout("etc/.wh.shadow"), whiteout(".wh.opt"), file("srv/new", ""), whiteout("srv/.wh..wh..opq"), symlink("lnk", "/etc"),
		file("same", "s1"), whiteout(".wh.same"))
	l2 := mkTar(t, file("etc/passwd", "v2"), hardlink("etc/passwd-link", "etc/passwd"), hardlink("glink", "etc/group"))
	l3 := mkTar(t, file("unrelated", "u"), file("big", strings.Repeat("x", 100)))
	for _, tc := range []struct {
		path    string
		content string
		found   bool
		opened  []int
		errWant string
	}{
		{"/etc/passwd", "v2", true, []int{0, 0, 1, 1}, ""},
		{"etc/passwd-link", "v2", true, []int{0, 0, 2, 1}, ""},
		{"etc/group", "g0", true, []int{1, 1, 1, 1}, ""},
		{"glink", "g0", true, []int{1, 1, 2, 1}, ""},
		{"etc/shadow", "", false, []int{0, 1, 1, 1}, ""},
		{"opt/x", "", false, []int{0, 1, 1, 1}, ""},
		{"srv/y", "", false, []int{0, 1, 1, 1}, ""},
		{"srv/new", "", true, []int{0, 1, 1, 1}, ""},
		{"lnk/z", "", false, []int{0, 1, 1, 1}, ""},
		{"same", "s1", true, []int{0, 1, 1, 1}, ""},
		{"nowhere", "", false, []int{1, 1, 1, 1}, ""},
		{"big", "", false, []int{0, 0, 0, 1}, "100 bytes"},
		{"/", "", false, []int{0, 0, 0, 0}, "root"},
	} {
		cl := newCountingLayers(l0, l1, l2, l3)
		hdr, content, found, err := FindFile(cl.openers(), tc.path, 64)
		if tc.errWant != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errWant) {
				t.Errorf("FindFile(%q): error %v, want %q", tc.path, err, tc.errWant)
			}
		} else if err != nil {
			t.Errorf("FindFile(%q): %v", tc.path, err)
			continue
		}
		if found != tc.found || string(content) != tc.content {
			t.Errorf("FindFile(%q) = %q, %v; want %q, %v", tc.path, content, found, tc.content, tc.found)
		}
		if found && hdr.Name != cleanPath(tc.path) {
			t.Errorf("FindFile(%q): header name %q", tc.path, hdr.Name)
		}
		if got := cl.opened(); !slices.Equal(got, tc.opened) {
			t.Errorf("FindFile(%q) opened layers %v times, want %v", tc.path, got, tc.opened)
		}
	}
	// Negative maxSize: no limit.
	_, content, found, err := FindFile(newCountingLayers(l3).openers(), "big", -1)
	if err != nil || !found || len(content) != 100 {
		t.Errorf("unlimited FindFile: %d bytes, %v, %v", len(content), found, err)
	}
}
