package ptrace

import (
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Bind maps a guest path (a file or directory) to a host path: what is
// below Guest is Host's, not the root's.
type Bind struct {
	Guest, Host string
	// ReadOnly refuses changes below it (EROFS).
	ReadOnly bool
}

// fsView translates guest paths into the root directory and back.
type fsView struct {
	root  string // host path of the root, clean, symlinks resolved
	binds []Bind // longest guest path first
}

func newView(root string, binds []Bind) *fsView {
	v := &fsView{root: path.Clean(root)}
	for _, b := range binds {
		v.binds = append(v.binds, Bind{Guest: path.Clean("/" + b.Guest), Host: path.Clean(b.Host), ReadOnly: b.ReadOnly})
	}
	sort.SliceStable(v.binds, func(i, j int) bool { return len(v.binds[i].Guest) > len(v.binds[j].Guest) })
	return v
}

// bound returns the host path of guest path p when p is a bind or below
// one.
func (v *fsView) bound(p string) (string, bool) {
	for _, b := range v.binds {
		if p == b.Guest {
			return b.Host, true
		}
		if strings.HasPrefix(p, b.Guest+"/") || b.Guest == "/" {
			return b.Host + p[len(b.Guest):], true
		}
	}
	return "", false
}

// maxLinks is how many symlinks one resolution follows (as the kernel).
const maxLinks = 40

// resolve turns the absolute guest path p into a host path below the root
// (or a bind), resolving symlinks inside the root. The last component is
// followed when follow is set (or p ends in "/"). Components after one
// that does not exist are kept as they are: the kernel then fails as it
// would have. It returns the host path and the resolved guest path.
func (v *fsView) resolve(p string, follow bool) (host, guest string, err error) {
	if strings.HasSuffix(p, "/") {
		follow = true
	}
	todo := splitPath(p)
	cur := "/"
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		if h, ok := v.bound(next); ok {
			rest := strings.Join(todo, "/")
			if rest != "" {
				h += "/" + rest
				next += "/" + rest
			}
			return h, next, nil
		}
		if len(todo) == 0 && !follow {
			cur = next
			break
		}
		var st unix.Stat_t
		full := v.root + next
		if err := unix.Lstat(full, &st); err != nil {
			// Missing (or not a directory): the rest as it is.
			rest := strings.Join(todo, "/")
			if rest != "" {
				next += "/" + rest
			}
			// A bind below a directory the root lacks (an ssh socket
			// at /run/buildkit/…, a tmpfs in a new directory).
			if h, ok := v.bound(path.Clean(next)); ok {
				return h, path.Clean(next), nil
			}
			return v.root + next, next, nil
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			cur = next
			continue
		}
		links++
		if links > maxLinks {
			return "", "", unix.ELOOP
		}
		target, err := readlink(full)
		if err != nil {
			return "", "", err
		}
		if strings.HasPrefix(target, "/") {
			cur = "/"
		}
		todo = append(splitPath(target), todo...)
	}
	if h, ok := v.bound(cur); ok {
		return h, cur, nil
	}
	if cur == "/" {
		return v.root, cur, nil
	}
	return v.root + cur, cur, nil
}

// guestOf turns a host path into the guest path that names it ("" when
// it is neither below the root nor a bind).
func (v *fsView) guestOf(host string) string {
	if host == v.root {
		return "/"
	}
	if strings.HasPrefix(host, v.root+"/") {
		return host[len(v.root):]
	}
	for _, b := range v.binds {
		if host == b.Host {
			return b.Guest
		}
		if strings.HasPrefix(host, b.Host+"/") {
			if b.Guest == "/" {
				return host[len(b.Host):]
			}
			return b.Guest + host[len(b.Host):]
		}
	}
	return ""
}

func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}

func readlink(p string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlink(p, buf)
		if err != nil {
			return "", err
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, len(buf)*4)
	}
}

// readOnly reports whether the host path is a read-only bind or below one.
func (v *fsView) readOnly(host string) bool {
	for _, b := range v.binds {
		if b.ReadOnly && (host == b.Host || strings.HasPrefix(host, b.Host+"/")) {
			return true
		}
	}
	return false
}
