package build

import (
	"archive/tar"
	"path"
	"strings"
)

// knownTree records the entries of the layers this build made, so that
// later steps can follow symlinks and see directories they created without
// reading base layers. Paths are absolute and clean.
type knownTree struct {
	entries map[string]*tar.Header
	// scratch is true when nothing lies below (FROM scratch): then an
	// unknown path is known to be missing.
	scratch bool
}

func newKnownTree() *knownTree { return &knownTree{entries: map[string]*tar.Header{}} }

func (k *knownTree) clone() *knownTree {
	c := &knownTree{entries: make(map[string]*tar.Header, len(k.entries)), scratch: k.scratch}
	for p, h := range k.entries {
		c.entries[p] = h
	}
	return c
}

type knownNode struct{ hdr *tar.Header }

func (n *knownNode) isDir() bool { return n.hdr.Typeflag == tar.TypeDir }

func (k *knownTree) add(p string, h *tar.Header) {
	p = path.Clean("/" + p)
	k.entries[p] = h
	// Parents of an entry exist (as directories, or as symlinks we know).
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		if _, ok := k.entries[d]; ok {
			break
		}
		k.entries[d] = &tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}
	}
}

// resolve follows known symlinks through p (like a chroot: never above /)
// and returns the resulting path and its entry, nil when unknown.
func (k *knownTree) resolve(p string) (string, *knownNode) {
	p = path.Clean("/" + p)
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	cur := "/"
	hops := 0
	for i := 0; i < len(parts); i++ {
		if parts[i] == "" {
			continue
		}
		next := path.Join(cur, parts[i])
		h, ok := k.entries[next]
		if ok && h.Typeflag == tar.TypeSymlink && hops < 40 {
			hops++
			target := h.Linkname
			if !path.IsAbs(target) {
				target = path.Join(cur, target)
			}
			rest := append(strings.Split(strings.TrimPrefix(path.Clean("/"+target), "/"), "/"), parts[i+1:]...)
			parts = rest
			cur = "/"
			i = -1
			continue
		}
		cur = next
	}
	if h, ok := k.entries[cur]; ok {
		return cur, &knownNode{hdr: h}
	}
	if cur == "/" {
		return cur, &knownNode{hdr: &tar.Header{Typeflag: tar.TypeDir, Name: "/", Mode: 0o755}}
	}
	return cur, nil
}
