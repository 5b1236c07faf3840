package archive

import (
	"archive/tar"
	"fmt"
	"path"
	"strings"
)

// OCI whiteouts. A file named WhiteoutPrefix+name in a layer hides name (and
// everything below it) in the layers beneath; a file named OpaqueWhiteout
// in a directory hides every entry of the layers beneath in that directory.
// Neither hides entries of its own layer.
const (
	WhiteoutPrefix = ".wh."
	OpaqueWhiteout = ".wh..wh..opq"
)

// whiteoutMetaPrefix marks AUFS bookkeeping files (".wh..wh.plnk" and the
// like), which carry no meaning for an image and are ignored.
const whiteoutMetaPrefix = WhiteoutPrefix + WhiteoutPrefix

// cleanReadName turns an entry name read from an untrusted tar into a
// clean relative path ("" is the root). A leading "/" is dropped (absolute
// names are relative to the root); a name that climbs above the root with
// ".." is refused.
func cleanReadName(name string) (string, error) {
	if strings.Contains(name, "..") { // else no component is ".."
		depth := 0
		for _, c := range strings.Split(name, "/") {
			switch c {
			case "", ".":
			case "..":
				depth--
				if depth < 0 {
					return "", fmt.Errorf("entry %q: path escapes the root", name)
				}
			default:
				depth++
			}
		}
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("entry %q: NUL byte in name", name)
	}
	return cleanPath(name), nil
}

// cleanPath cleans p lexically as a path inside a root: relative, no
// leading "/" or "./", ".." never above the root; "" is the root.
func cleanPath(p string) string {
	// The forms tars use ("./usr/bin/", "usr/bin", "/usr/bin") need no
	// copy: the leading "./" or "/" and a trailing "/" are cut off.
	q := p
	for {
		if strings.HasPrefix(q, "./") {
			q = q[2:]
		} else if strings.HasPrefix(q, "/") {
			q = q[1:]
		} else {
			break
		}
	}
	q = strings.TrimSuffix(q, "/")
	if q != "." && q != ".." && !strings.HasSuffix(q, "/") && !strings.HasPrefix(q, "./") && !strings.HasPrefix(q, "../") &&
		!strings.HasSuffix(q, "/.") && !strings.HasSuffix(q, "/..") &&
		!strings.Contains(q, "//") && !strings.Contains(q, "/./") && !strings.Contains(q, "/../") {
		return q
	}
	c := path.Clean("/" + p)
	return c[1:]
}

// parentPath returns the parent of a clean relative path ("" for the root's
// children and for the root itself).
func parentPath(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ""
	}
	return p[:i]
}

// joinPath joins a clean relative directory path and a name.
func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// whiteoutKind classifies a clean entry path.
type whiteoutKind int

const (
	notWhiteout   whiteoutKind = iota
	plainWhiteout              // hides target
	opaqueMarker               // hides the lower contents of its directory
	metaWhiteout               // AUFS bookkeeping, ignored
)

// parseWhiteout classifies the clean entry path p (from the entry named
// name, for errors). For a plain whiteout, target is the hidden path; for
// an opaque marker, target is its directory.
func parseWhiteout(p, name string) (whiteoutKind, string, error) {
	base := path.Base(p)
	if p == "" || !strings.HasPrefix(base, WhiteoutPrefix) {
		return notWhiteout, "", nil
	}
	dir := parentPath(p)
	switch {
	case base == OpaqueWhiteout:
		return opaqueMarker, dir, nil
	case strings.HasPrefix(base, whiteoutMetaPrefix):
		return metaWhiteout, "", nil
	}
	target := base[len(WhiteoutPrefix):]
	if target == "" || target == "." || target == ".." {
		return notWhiteout, "", fmt.Errorf("entry %q: invalid whiteout of %q", name, target)
	}
	return plainWhiteout, joinPath(dir, target), nil
}

// fileType returns the normalised type of an entry (old regular-file flags
// become tar.TypeReg) and whether it is a file type kiln handles: others
// (volume labels, continuation entries, unknown vendor types) are ignored.
func fileType(typ byte) (byte, bool) {
	switch typ {
	//lint:ignore SA1019 old tars still carry it; normalise it away
	case tar.TypeRegA, tar.TypeGNUSparse:
		return tar.TypeReg, true
	case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return typ, true
	}
	return typ, false
}
