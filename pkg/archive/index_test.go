package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func diffIDOf(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// A tree made from layer indexes is the tree made from the layers: same
// nodes (whiteouts and opaque markers applied), and ReadFiles reads the
// same content through it.
func TestIndexTreeMatchesLayerTree(t *testing.T) {
	l0 := mkTar(t, dir("etc"), file("etc/passwd", "root:x:0:0\n"), symlink("bin", "usr/bin"), dir("usr"), dir("usr/bin"),
		file("usr/bin/sh", "sh"), hardlink("usr/bin/ash", "usr/bin/sh"), dir("gone"), file("gone/f", "f"), dir("op"), file("op/old", "o"),
		tent{name: "attr", typ: '0', body: "a", mode: 0o600, uid: 7, gid: 8, pax: map[string]string{"SCHILY.xattr.user.k": "v"}})
	l1 := mkTar(t, whiteout(".wh.gone"), dir("op"), whiteout("op/.wh..wh..opq"), file("op/new", "n"), file("etc/passwd", "root:x:0:0\napp:x:1:1\n"))
	layers := [][]byte{l0, l1}
	want, err := BuildTree([]Opener{opener(l0), opener(l1)})
	if err != nil {
		t.Fatal(err)
	}
	got := NewTree()
	for i, l := range layers {
		x, err := IndexLayer(bytes.NewReader(l), diffIDOf(l))
		if err != nil {
			t.Fatal(err)
		}
		enc, err := x.Encode()
		if err != nil {
			t.Fatal(err)
		}
		dec, err := DecodeIndex(enc, diffIDOf(l))
		if err != nil {
			t.Fatal(err)
		}
		if err := got.ApplyIndex(i, dec); err != nil {
			t.Fatal(err)
		}
	}
	if a, b := dump(t, want), dump(t, got); a != b {
		t.Fatalf("index tree differs:\n%s\nwant:\n%s", b, a)
	}
	var read []string
	err = got.ReadFiles([]Opener{opener(l0), opener(l1)}, []string{"/etc/passwd", "/usr/bin/ash", "/attr"}, func(n *Node, r io.Reader) error {
		b, _ := io.ReadAll(r)
		read = append(read, n.Path+"="+string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(read, ","); s != "usr/bin/ash=sh,attr=a,etc/passwd=root:x:0:0\napp:x:1:1\n" {
		t.Errorf("read %q", s)
	}
}

func opener(b []byte) Opener {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

func dump(t *testing.T, tr *Tree) string {
	var b strings.Builder
	err := tr.Walk("/", func(n *Node) error {
		h := n.Header
		b.WriteString(n.Path + " " + string(h.Typeflag) + " " + h.Linkname + " " + h.ModTime.String() + " " + string(rune('0'+h.Uid)) + " ")
		for k, v := range h.PAXRecords {
			b.WriteString(k + "=" + v)
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestIndexRefusesOtherContent(t *testing.T) {
	l := mkTar(t, file("a", "a"))
	other := mkTar(t, file("a", "b"))
	if _, err := IndexLayer(bytes.NewReader(other), diffIDOf(l)); err == nil || !strings.Contains(err.Error(), "its content is sha256:") {
		t.Errorf("indexing other content: %v", err)
	}
	x, err := IndexLayer(bytes.NewReader(l), diffIDOf(l))
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := x.Encode()
	if _, err := DecodeIndex(enc, diffIDOf(other)); err == nil {
		t.Error("an index decoded for another diff ID")
	}
	if _, err := DecodeIndex([]byte("not gzip"), diffIDOf(l)); err == nil {
		t.Error("garbage decoded")
	}
}

// The tee indexer gives the index only when the whole layer went through.
func TestIndexerTee(t *testing.T) {
	l := mkTar(t, dir("d"), file("d/f", strings.Repeat("x", 100000)))
	ix := NewIndexer(diffIDOf(l))
	io.Copy(ix, bytes.NewReader(l))
	data, err := ix.Finish()
	if err != nil {
		t.Fatal(err)
	}
	x, err := DecodeIndex(data, diffIDOf(l))
	if err != nil || len(x.Entries) != 2 || x.Entries[1].Name != "d/f" || x.Entries[1].Size != 100000 {
		t.Fatalf("index %+v, %v", x, err)
	}
	// The same index as IndexLayer's.
	want, err := IndexLayer(bytes.NewReader(l), diffIDOf(l))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(x, want) {
		t.Errorf("tee index %+v\nIndexLayer's %+v", x, want)
	}
	ix = NewIndexer(diffIDOf(l))
	ix.Write(l[:1000])
	if _, err := ix.Finish(); err == nil {
		t.Error("a partial layer gave an index")
	}
}

// Format 2 gives back every field; format 1 (JSON, in stores and caches
// made before) is still read; a cut or damaged index is an error, never a
// part of an index.
func TestIndexFormats(t *testing.T) {
	t.Parallel()
	d := diffIDOf([]byte("layer"))
	x := &LayerIndex{DiffID: d, Entries: []IndexEntry{
		{Name: "./", Type: tar.TypeDir, Mode: 0o755},
		{Name: "./usr/bin/", Type: tar.TypeDir, Mode: 0o755, MTime: 1700000000123456789},
		{Name: "./usr/bin/sh", Type: tar.TypeReg, Mode: 0o4755, UID: 1000, GID: -1, Size: 1 << 40, MTime: -5},
		{Name: "./usr/bin/ash", Type: tar.TypeLink, Link: "./usr/bin/sh"},
		{Name: "./usr/b", Type: tar.TypeSymlink, Link: "bin"},
		{Name: "dev/null", Type: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3},
		{Name: "a", Type: tar.TypeReg, Xattrs: map[string]string{"SCHILY.xattr.user.b": "2", "SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}},
		{Name: "", Type: 0},
		{Name: "a", Type: tar.TypeReg},
	}}
	enc, err := x.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeIndex(enc, d)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, x) {
		t.Fatalf("decoded %+v\nwant %+v", got, x)
	}
	empty, _ := (&LayerIndex{DiffID: d}).Encode()
	if got, err := DecodeIndex(empty, d); err != nil || len(got.Entries) != 0 {
		t.Fatalf("empty index: %+v, %v", got, err)
	}
	if _, err := DecodeIndex(enc, diffIDOf([]byte("other"))); err == nil || !strings.Contains(err.Error(), "describes") {
		t.Errorf("index of another layer: %v", err)
	}

	// Format 1.
	var v1buf bytes.Buffer
	zw := gzip.NewWriter(&v1buf)
	json.NewEncoder(zw).Encode(indexFile{Version: 1, DiffID: d.String(), Entries: x.Entries})
	zw.Close()
	if got, err := DecodeIndex(v1buf.Bytes(), d); err != nil || !reflect.DeepEqual(got, x) {
		t.Fatalf("format 1: %+v, %v", got, err)
	}

	// Cut short, at every length: the gzip stream or the index is cut.
	raw := gunzip(t, enc)
	for n := 0; n < len(raw); n++ {
		if _, err := DecodeIndex(gzipped(raw[:n]), d); err == nil {
			t.Fatalf("an index cut at %d of %d bytes decoded", n, len(raw))
		}
	}
	bad := append([]byte{}, raw...)
	bad[len(indexMagic)+len(d.String())+1] = 7 // the first record's tag
	if _, err := DecodeIndex(gzipped(bad), d); err == nil {
		t.Error("an unknown record decoded")
	}
	if _, err := DecodeIndex([]byte("not gzip"), d); err == nil {
		t.Error("garbage decoded")
	}
}

func gunzip(t *testing.T, b []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}
