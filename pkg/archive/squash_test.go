package archive

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"testing"
	"time"
)

// flatEntry is one path of a flattened stack of layers, as a container
// would see it: metadata, content and which other paths share its inode.
type flatEntry struct {
	desc  string // type, mode, owners, mtime, xattrs, content or target
	inode int
}

// flatten applies tars as a runtime would (whiteouts and opaque markers
// of a layer hide only lower layers; a non-directory replacing a
// directory removes its contents; a hard link shares its target's inode).
func flatten(t *testing.T, layers ...[]byte) map[string]string {
	t.Helper()
	m := map[string]*flatEntry{}
	inodes := 0
	remove := func(p string, self bool) {
		for k := range m {
			if (self && k == p) || strings.HasPrefix(k, p+"/") || (p == "" && k != "") {
				delete(m, k)
			}
		}
	}
	for _, data := range layers {
		hdrs, bodies := readTar(t, data)
		var adds []*tar.Header
		for _, h := range hdrs {
			p := cleanPath(h.Name)
			dir, base := parentPath(p), path.Base(p)
			switch {
			case base == OpaqueWhiteout:
				remove(dir, false)
			case strings.HasPrefix(base, WhiteoutPrefix):
				remove(joinPath(dir, base[len(WhiteoutPrefix):]), true)
			default:
				adds = append(adds, h)
			}
		}
		for _, h := range adds {
			p := cleanPath(h.Name)
			if old, ok := m[p]; ok && strings.HasPrefix(old.desc, "dir") && h.Typeflag != tar.TypeDir {
				remove(p, false)
			}
			var xattrs []string
			for _, k := range slices.Sorted(maps.Keys(h.PAXRecords)) {
				if strings.HasPrefix(k, "SCHILY.xattr.") {
					xattrs = append(xattrs, k+"="+h.PAXRecords[k])
				}
			}
			meta := fmt.Sprintf("%04o %d:%d %d %v", h.Mode&0o7777, h.Uid, h.Gid, h.ModTime.Unix(), xattrs)
			switch h.Typeflag {
			case tar.TypeLink:
				target := m[cleanPath(h.Linkname)]
				if target == nil {
					t.Fatalf("hard link %s: no target %s", p, h.Linkname)
				}
				m[p] = target
			case tar.TypeReg:
				inodes++
				m[p] = &flatEntry{desc: fmt.Sprintf("file %s %x", meta, sha256.Sum256([]byte(bodies[h.Name]))), inode: inodes}
			case tar.TypeDir:
				if old, ok := m[p]; ok && strings.HasPrefix(old.desc, "dir") {
					old.desc = "dir " + meta
					continue
				}
				inodes++
				m[p] = &flatEntry{desc: "dir " + meta, inode: inodes}
			default:
				inodes++
				m[p] = &flatEntry{desc: fmt.Sprintf("%c %s %s", h.Typeflag, meta, h.Linkname), inode: inodes}
			}
		}
	}
	// Describe each path with the other names of its inode.
	names := map[*flatEntry][]string{}
	for p, e := range m {
		names[e] = append(names[e], p)
	}
	out := map[string]string{}
	for p, e := range m {
		out[p] = e.desc + " links " + strings.Join(slices.Sorted(slices.Values(names[e])), ",")
	}
	return out
}

func squashTars(t *testing.T, overBase bool, layers ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := NewTarWriter(&buf, TarOptions{})
	openers := make([]Opener, len(layers))
	for i, l := range layers {
		openers[i] = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(l)), nil }
	}
	if err := Squash(tw, openers, SquashOptions{OverBase: overBase, TempDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func diffFlat(t *testing.T, what string, want, got map[string]string) {
	t.Helper()
	for _, p := range slices.Sorted(maps.Keys(want)) {
		if got[p] != want[p] {
			t.Errorf("%s: /%s is %q, want %q", what, p, got[p], want[p])
		}
	}
	for _, p := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: /%s is there (%q), want nothing", what, p, got[p])
		}
	}
}

// TestSquash: one squashed layer gives the filesystem its layers gave,
// over the base (--squash) and alone (--squash-all): overwritten files,
// deleted files and directories, a directory deleted and made again
// (whose base contents must stay hidden), opaque markers, a file
// replacing a directory, hard links whose first name was overwritten or
// deleted later, a hard link into the base, xattrs, owners and mtimes.
func TestSquash(t *testing.T) {
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	owned := file("etc/owned", "o")
	owned.uid, owned.gid, owned.mode, owned.mtime = 1000, 1001, 0o600, old
	xa := file("etc/xa", "x")
	xa.pax = map[string]string{"SCHILY.xattr.user.k": "v"}
	base := mkTar(t, dir("etc"), file("etc/keep", "k"), file("etc/gone", "g"), owned, xa,
		dir("d"), file("d/basefile", "b"), dir("o"), file("o/baseonly", "b"),
		dir("r"), file("r/x", "x"), dir("f"), file("f/child", "c"), file("shared", "s"))
	l1 := mkTar(t, dir("etc"), file("etc/new", "n1"), whiteout("etc/.wh.gone"),
		file("a", "A"), hardlink("b", "a"), hardlink("c", "a"), file("z", "Z"), hardlink("y", "z"),
		whiteout(".wh.d"), file("f", "now a file"), hardlink("s2", "shared"))
	l2 := mkTar(t, dir("d"), file("d/again", "new"), dir("o"), whiteout("o/.wh..wh..opq"), file("o/mine", "m"),
		file("a", "A2"), whiteout(".wh.z"), whiteout(".wh.r"), dir("etc"), file("etc/new", "n2"))
	l3 := mkTar(t, whiteout(".wh.f"), dir("f"), file("f/again", "f"))
	layers := [][]byte{l1, l2, l3}
	want := flatten(t, append([][]byte{base}, layers...)...)

	sq := squashTars(t, true, layers...)
	diffFlat(t, "--squash", want, flatten(t, base, sq))
	// The squashed layer hides what it must with one whiteout per gone
	// path and opaque markers on the remade directories. z, made and
	// deleted by the squashed layers, keeps its whiteout: the base is not
	// read, and z may have replaced a base file.
	hdrs, _ := readTar(t, sq)
	var marks []string
	for _, h := range hdrs {
		if strings.Contains(h.Name, WhiteoutPrefix) {
			marks = append(marks, h.Name)
		}
	}
	if w := []string{"d/.wh..wh..opq", "etc/.wh.gone", "f/.wh..wh..opq", "o/.wh..wh..opq", ".wh.r", ".wh.z"}; !slices.Equal(slices.Sorted(slices.Values(marks)), slices.Sorted(slices.Values(w))) {
		t.Errorf("whiteouts and markers %q, want %q", marks, w)
	}
	if again := squashTars(t, true, layers...); !bytes.Equal(again, sq) {
		t.Error("two squashes of the same layers differ")
	}

	all := squashTars(t, false, append([][]byte{base}, layers...)...)
	diffFlat(t, "--squash-all", want, flatten(t, all))
	allHdrs, _ := readTar(t, all)
	for _, h := range allHdrs {
		if strings.Contains(h.Name, WhiteoutPrefix) {
			t.Errorf("--squash-all layer has %s", h.Name)
		}
	}
}

// TestSquashRefusesStaleBaseLink: a hard link into the base whose target
// a squashed layer changed cannot be kept as a link (it would link to the
// new file): Squash says so rather than write it.
func TestSquashRefusesStaleBaseLink(t *testing.T) {
	l1 := mkTar(t, hardlink("s2", "shared"), file("shared", "changed"))
	var buf bytes.Buffer
	open := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(l1)), nil }
	err := Squash(NewTarWriter(&buf, TarOptions{}), []Opener{open}, SquashOptions{OverBase: true})
	if err == nil || !strings.Contains(err.Error(), `hard link "s2"`) {
		t.Fatalf("err = %v", err)
	}
}
