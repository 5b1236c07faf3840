package testutil

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ImageTree returns the merged file tree of img: its layers applied in
// order as a container runtime would, with OCI whiteouts honoured
// (".wh.NAME" deletes NAME and everything under it from the layers below,
// ".wh..wh..opq" empties its directory of what the layers below put there,
// and a non-directory replacing a directory removes the directory's
// contents). The root directory itself is not listed.
//
// It returns one line per entry, sorted by path, of the form
// "PATH TYPE MODE UID:GID SIZE SHA256 LINK", for example
// "/bin/sh symlink 0777 0:0 - - /bin/busybox", where:
//
//   - PATH is absolute ("/etc/passwd"); a path with a space, a quote or a
//     non-printable character is written as a Go quoted string.
//   - TYPE is file, dir, symlink, hardlink, char, block or fifo.
//   - MODE is the permission bits with setuid/setgid/sticky, 4 octal digits
//     ("0755", "1777", "4755").
//   - UID:GID are the numeric owners.
//   - SIZE and SHA256 are the content's length and hex SHA-256 for files and
//     hardlinks (a hardlink shows its target's content), "-" otherwise.
//   - LINK is a symlink's target as written, a hardlink's target as an
//     absolute path, "MAJOR,MINOR" for devices, "-" otherwise.
//
// Modification times, xattrs and user/group names are not shown. Parent
// directories that no layer has an entry for are not invented, so the lines
// show whether a builder wrote them.
//
// Compare the result with Golden, or search it with TreeEntry.
func ImageTree(t testing.TB, img v1.Image) []string {
	t.Helper()
	lines, err := imageTree(img)
	if err != nil {
		t.Fatalf("ImageTree: %v", err)
	}
	return lines
}

// LayerTree returns the entries of one layer as they are in its tar, in the
// format of ImageTree, sorted by path. Whiteouts are listed as the path they
// delete with TYPE "whiteout", and opaque markers as their directory with
// TYPE "opaque" (MODE and the rest as in the tar). A hardlink whose target
// is not in the layer shows "-" for SIZE and SHA256.
func LayerTree(t testing.TB, layer v1.Layer) []string {
	t.Helper()
	entries := map[string]*treeEntry{}
	err := readLayer(layer, func(e *treeEntry) error {
		if e.typ == "hardlink" {
			if target, ok := entries[e.link]; ok && (target.typ == "file" || target.typ == "hardlink") {
				e.size, e.sha = target.size, target.sha
			}
		}
		entries[e.path] = e
		return nil
	})
	if err != nil {
		t.Fatalf("LayerTree: %v", err)
	}
	return format(entries)
}

// TreeEntry returns the line of lines (from ImageTree or LayerTree) for
// path, or "" if there is none.
func TreeEntry(lines []string, path string) string {
	p := quotePath(path)
	for _, l := range lines {
		if strings.HasPrefix(l, p+" ") {
			return l
		}
	}
	return ""
}

// treeEntry is one entry of a layer or of the merged tree.
type treeEntry struct {
	path     string // absolute, cleaned
	typ      string
	mode     int64
	uid, gid int
	size     string
	sha      string
	link     string
}

func (e *treeEntry) String() string {
	return fmt.Sprintf("%s %s %04o %d:%d %s %s %s", quotePath(e.path), e.typ, e.mode, e.uid, e.gid, e.size, e.sha, e.link)
}

func imageTree(img v1.Image) ([]string, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	merged := map[string]*treeEntry{}
	for i, l := range layers {
		// Whiteouts apply to the layers below only, and may come after this
		// layer's own entries in the tar: collect first, then apply.
		var adds, deletes, opaques []*treeEntry
		err := readLayer(l, func(e *treeEntry) error {
			switch e.typ {
			case "whiteout":
				deletes = append(deletes, e)
			case "opaque":
				opaques = append(opaques, e)
			default:
				adds = append(adds, e)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		for _, e := range deletes {
			removeTree(merged, e.path, true)
		}
		for _, e := range opaques {
			removeTree(merged, e.path, false)
		}
		for _, e := range adds {
			if old, ok := merged[e.path]; ok && old.typ == "dir" && e.typ != "dir" {
				removeTree(merged, e.path, false)
			}
			if e.typ == "hardlink" {
				if target, ok := merged[e.link]; ok && (target.typ == "file" || target.typ == "hardlink") {
					e.size, e.sha = target.size, target.sha
				}
			}
			merged[e.path] = e
		}
	}
	return format(merged), nil
}

// removeTree deletes everything under p from m, and p itself if self.
func removeTree(m map[string]*treeEntry, p string, self bool) {
	if self {
		delete(m, p)
	}
	prefix := p + "/"
	if p == "/" {
		prefix = "/"
	}
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			delete(m, k)
		}
	}
}

func format(m map[string]*treeEntry) []string {
	paths := make([]string, 0, len(m))
	for p := range m {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	lines := make([]string, 0, len(paths))
	for _, p := range paths {
		lines = append(lines, m[p].String())
	}
	return lines
}

// readLayer calls fn for each entry of l's uncompressed tar, with whiteouts
// turned into entries of type "whiteout" or "opaque" for the path they act
// on. The root directory is skipped.
func readLayer(l v1.Layer, fn func(*treeEntry) error) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p := cleanPath(hdr.Name)
		e := &treeEntry{
			path: p, mode: hdr.Mode & 0o7777, uid: hdr.Uid, gid: hdr.Gid,
			size: "-", sha: "-", link: "-",
		}
		dir, base := path.Split(p)
		switch {
		case base == ".wh..wh..opq":
			e.typ, e.path = "opaque", cleanPath(dir)
		case strings.HasPrefix(base, ".wh."):
			e.typ, e.path = "whiteout", cleanPath(dir+strings.TrimPrefix(base, ".wh."))
		default:
			switch hdr.Typeflag {
			case tar.TypeReg:
				h := sha256.New()
				n, err := io.Copy(h, tr)
				if err != nil {
					return fmt.Errorf("%s: %w", hdr.Name, err)
				}
				e.typ, e.size, e.sha = "file", strconv.FormatInt(n, 10), hex.EncodeToString(h.Sum(nil))
			case tar.TypeDir:
				e.typ = "dir"
			case tar.TypeSymlink:
				e.typ, e.link = "symlink", hdr.Linkname
			case tar.TypeLink:
				e.typ, e.link = "hardlink", cleanPath(hdr.Linkname)
			case tar.TypeChar:
				e.typ, e.link = "char", fmt.Sprintf("%d,%d", hdr.Devmajor, hdr.Devminor)
			case tar.TypeBlock:
				e.typ, e.link = "block", fmt.Sprintf("%d,%d", hdr.Devmajor, hdr.Devminor)
			case tar.TypeFifo:
				e.typ = "fifo"
			default:
				return fmt.Errorf("%s: unexpected tar entry type %q", hdr.Name, hdr.Typeflag)
			}
		}
		if e.path == "/" && e.typ == "dir" {
			continue
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

// cleanPath turns a tar entry name ("./a/b/", "a/b", "/a/b") into "/a/b".
func cleanPath(name string) string {
	return path.Clean("/" + name)
}

// quotePath writes p as is when it is plain, else as a Go quoted string, so
// that every line splits on spaces.
func quotePath(p string) string {
	for _, r := range p {
		if r == ' ' || r == '"' || r == '\\' || !unicode.IsPrint(r) || r > unicode.MaxASCII {
			return strconv.Quote(p)
		}
	}
	return p
}
