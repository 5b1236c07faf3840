package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/pkg/archive"
)

// TestAddTree: the floor writes a directory's contents (as COPY dir/ does)
// in lexical order with their content, owned by root, and reports the diff
// ID of exactly those bytes.
func TestAddTree(t *testing.T) {
	dir := t.TempDir()
	for p, c := range map[string]string{"b/z.txt": "z", "a.txt": "a", "b/c/d.txt": "d"} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	info, err := archive.WriteLayer(&buf, archive.None, archive.TarOptions{}, func(tw *archive.TarWriter) error {
		return addTree(tw, dir)
	})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	if info.DiffID.Hex != hex.EncodeToString(sum[:]) {
		t.Errorf("diff ID %s is not the sha256 of the tar written", info.DiffID)
	}
	var got []string
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s owned by %d:%d", h.Name, h.Uid, h.Gid)
		}
		got = append(got, h.Name+"="+string(b)+h.Linkname)
	}
	want := "a.txt=a b/= b/c/= b/c/d.txt=d b/z.txt=z link=a.txt"
	if strings.Join(got, " ") != want {
		t.Errorf("entries %q, want %q", strings.Join(got, " "), want)
	}
}
