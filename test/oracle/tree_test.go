package oracle

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// entry is one path of a flattened image tree.
type entry struct {
	typ      string // file, dir, symlink, char, block, fifo
	mode     int64  // permission bits with setuid, setgid, sticky
	uid, gid int
	size     int64
	sha      string            // content of files
	small    string            // the content itself, when short and printable
	link     string            // symlink target; devices "MAJOR,MINOR"
	hardlink string            // a tar hardlink's target, as read
	group    string            // smallest path of its hardlink group, if any
	mtime    time.Time         // as in the tar (seconds)
	xattrs   map[string]string // from PAX SCHILY.xattr.*
	implicit bool              // a parent no layer has an entry for
}

// tree is a flattened image: layers applied in order with whiteouts.
type tree map[string]*entry

// flatten applies img's layers in order as a runtime does: ".wh.NAME"
// removes NAME from the layers below, ".wh..wh..opq" empties its
// directory, a non-directory over a directory removes what was under it.
// Then hardlink groups are resolved and missing parents added as implicit
// directories (0755 root, as runtimes make them).
func flatten(img v1.Image) (tree, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	t := tree{}
	for i, l := range layers {
		if err := t.apply(l); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
	}
	t.groupHardlinks()
	t.addParents()
	return t, nil
}

func (t tree) apply(l v1.Layer) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	adds := map[string]*entry{}
	var order []string
	var deletes, opaques []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		p := path.Clean("/" + h.Name)
		dir, base := path.Split(p)
		if base == ".wh..wh..opq" {
			opaques = append(opaques, path.Clean(dir))
			continue
		}
		if strings.HasPrefix(base, ".wh.") {
			deletes = append(deletes, path.Join(dir, strings.TrimPrefix(base, ".wh.")))
			continue
		}
		e, err := readEntry(h, tr)
		if err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		if p == "/" {
			continue
		}
		if _, ok := adds[p]; !ok {
			order = append(order, p)
		}
		adds[p] = e
	}
	for _, p := range deletes {
		t.remove(p, true)
	}
	for _, p := range opaques {
		t.remove(p, false)
	}
	for _, p := range order {
		e := adds[p]
		if old, ok := t[p]; ok && old.typ == "dir" && e.typ != "dir" {
			t.remove(p, false)
		}
		if e.hardlink != "" {
			target, ok := adds[e.hardlink]
			if !ok {
				target = t[e.hardlink]
			}
			if target == nil || target.typ != "file" {
				return fmt.Errorf("%s: hardlink to %s, which is not a file", p, e.hardlink)
			}
			cp := *target
			cp.hardlink = e.hardlink
			e = &cp
		}
		t[p] = e
	}
	return nil
}

func readEntry(h *tar.Header, r io.Reader) (*entry, error) {
	e := &entry{mode: h.Mode & 0o7777, uid: h.Uid, gid: h.Gid, mtime: h.ModTime.Truncate(time.Second)}
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if e.xattrs == nil {
				e.xattrs = map[string]string{}
			}
			e.xattrs[name] = v
		}
	}
	switch h.Typeflag {
	case tar.TypeReg:
		s := sha256.New()
		var head bytes.Buffer
		n, err := io.Copy(io.MultiWriter(s, &limitedBuffer{&head, 161}), r)
		if err != nil {
			return nil, err
		}
		e.typ, e.size, e.sha = "file", n, hex.EncodeToString(s.Sum(nil))[:16]
		if n <= 160 && utf8.Valid(head.Bytes()) {
			e.small = head.String()
		}
	case tar.TypeLink:
		e.typ, e.hardlink = "file", path.Clean("/"+h.Linkname)
	case tar.TypeDir:
		e.typ = "dir"
	case tar.TypeSymlink:
		e.typ, e.link = "symlink", h.Linkname
	case tar.TypeChar, tar.TypeBlock:
		e.typ = map[byte]string{tar.TypeChar: "char", tar.TypeBlock: "block"}[h.Typeflag]
		e.link = fmt.Sprintf("%d,%d", h.Devmajor, h.Devminor)
	case tar.TypeFifo:
		e.typ = "fifo"
	default:
		return nil, fmt.Errorf("unexpected tar type %q", h.Typeflag)
	}
	return e, nil
}

// limitedBuffer keeps the first n bytes written to it.
type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (t tree) remove(p string, self bool) {
	if self {
		delete(t, p)
	}
	prefix := strings.TrimSuffix(p, "/") + "/"
	for k := range t {
		if strings.HasPrefix(k, prefix) {
			delete(t, k)
		}
	}
}

// groupHardlinks names each set of hard-linked paths by its smallest path,
// so that which name a tar wrote first does not matter.
func (t tree) groupHardlinks() {
	parent := map[string]string{}
	find := func(p string) string {
		for parent[p] != "" && parent[p] != p {
			p = parent[p]
		}
		return p
	}
	for p, e := range t {
		if e.hardlink == "" {
			continue
		}
		if _, ok := t[e.hardlink]; !ok {
			continue
		}
		a, b := find(p), find(e.hardlink)
		if a != b {
			if a < b {
				parent[b] = a
			} else {
				parent[a] = b
			}
		}
	}
	for p, e := range t {
		if _, linked := parent[p]; linked || e.hardlink != "" {
			e.group = find(p)
		}
	}
	// A root of a group is in parent only as a value: mark it too.
	for _, root := range parent {
		if e, ok := t[find(root)]; ok {
			e.group = find(root)
		}
	}
}

func (t tree) addParents() {
	for p := range t {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if _, ok := t[d]; ok {
				break
			}
			t[d] = &entry{typ: "dir", mode: 0o755, implicit: true}
		}
	}
}

// format shows an entry; with times, its mtime too.
func (e *entry) format(times bool) string {
	var b strings.Builder
	b.WriteString(e.typ)
	if e.typ != "symlink" {
		fmt.Fprintf(&b, " %04o", e.mode)
	}
	fmt.Fprintf(&b, " %d:%d", e.uid, e.gid)
	switch e.typ {
	case "file":
		fmt.Fprintf(&b, " size=%d sha256=%s", e.size, e.sha)
	case "symlink":
		b.WriteString(" -> " + strconv.Quote(e.link))
	case "char", "block":
		b.WriteString(" " + e.link)
	}
	if e.group != "" {
		b.WriteString(" hardlinks=" + e.group)
	}
	if len(e.xattrs) > 0 {
		keys := make([]string, 0, len(e.xattrs))
		for k := range e.xattrs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, " xattr:%s=%q", k, e.xattrs[k])
		}
	}
	if e.implicit {
		b.WriteString(" (no entry: implicit)")
	} else if times {
		b.WriteString(" mtime=" + e.mtime.UTC().Format(time.RFC3339))
	}
	return b.String()
}

// runStubs are the mount points runc creates for a RUN step when the base
// lacks them.
var runStubs = []string{"/dev", "/proc", "/sys", "/etc"}

// diffTrees compares the oracle's tree (docker) with kiln's and returns
// one line per difference, sorted by path. An mtime is compared only
// where docker's is older than cutoff (it came from the context, a base,
// an archive or an HTTP server, not from the clock of the build), and
// neither side is an implicit directory. Symlink modes are not compared
// (Linux ignores them).
//
// Mount stubs are not compared: dockerd 20.10's BuildKit leaves the empty
// directories it made as mount points of a RUN step (runStubs, and the
// targets of RUN --mount, listed per case in stubs) in the image;
// BuildKit 0.11 and later remove them (MountStubsCleaner), and so does
// kiln. A docker-only empty root-owned 0755 directory made during the
// build at such a path is skipped.
func diffTrees(docker, kiln tree, cutoff time.Time, times bool, stubs []string) []string {
	isStub := map[string]bool{}
	for _, p := range append(append([]string{}, runStubs...), stubs...) {
		isStub[p] = true
	}
	paths := map[string]bool{}
	for p := range docker {
		paths[p] = true
	}
	for p := range kiln {
		paths[p] = true
	}
	sorted := make([]string, 0, len(paths))
	for p := range paths {
		sorted = append(sorted, p)
	}
	sort.Strings(sorted)
	var out []string
	for _, p := range sorted {
		d, k := docker[p], kiln[p]
		switch {
		case k == nil && isStub[p] && docker.isEmptyNewDir(p, cutoff):
		case k == nil:
			out = append(out, fmt.Sprintf("  %s: only docker: %s", quote(p), d.format(true)))
		case d == nil:
			out = append(out, fmt.Sprintf("  %s: only kiln:   %s", quote(p), k.format(true)))
		default:
			withTime := times && !d.implicit && !k.implicit && d.mtime.Before(cutoff)
			if d.format(withTime) != k.format(withTime) && !sameImplicit(d, k) {
				out = append(out, fmt.Sprintf("  %s:\n      docker: %s\n      kiln:   %s", quote(p), d.format(true), k.format(true)))
				if d.sha != k.sha && d.small != "" && k.small != "" {
					out = append(out, fmt.Sprintf("      content: docker %q, kiln %q", d.small, k.small))
				}
			}
		}
	}
	return out
}

// isEmptyNewDir: p is a root-owned 0755 directory made after cutoff with
// nothing in it.
func (t tree) isEmptyNewDir(p string, cutoff time.Time) bool {
	e := t[p]
	if e.typ != "dir" || e.mode != 0o755 || e.uid != 0 || e.gid != 0 || e.mtime.Before(cutoff) {
		return false
	}
	for q := range t {
		if strings.HasPrefix(q, p+"/") {
			return false
		}
	}
	return true
}

// sameImplicit: an implicit directory equals an explicit 0755 root one
// without xattrs (what a runtime would make for it).
func sameImplicit(a, b *entry) bool {
	if a.implicit == b.implicit {
		return false
	}
	ex := a
	if a.implicit {
		ex = b
	}
	return ex.typ == "dir" && ex.mode == 0o755 && ex.uid == 0 && ex.gid == 0 && len(ex.xattrs) == 0
}

func quote(p string) string {
	if strings.ContainsAny(p, " \"\\\t\n") {
		return strconv.Quote(p)
	}
	return p
}
