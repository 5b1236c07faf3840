//go:build linux && (amd64 || arm64)

package ptrace

import (
	"errors"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// call is one traced system call being handled at its entry stop.
type call struct {
	tr      *tracer
	t       *thread
	r       regs
	nr      int64
	changed bool
	used    uint64 // scratch bytes used
	posts   []func(ret int64) int64
	skipped bool
	hosts   []string // translated paths
	writes  bool     // the call changes what its paths name
}

// errSkip says the call was answered without running it.
var errSkip = errors.New("answered")

// skip answers the call with ret without running it.
func (c *call) skip(ret int64) error {
	setSysno(&c.r, -1)
	setRet(&c.r, ret)
	c.changed, c.skipped = true, true
	return errSkip
}

// fail answers the call with the error err.
func (c *call) fail(err error) error {
	var en unix.Errno
	if !errors.As(err, &en) {
		en = unix.EIO
	}
	return c.skip(-int64(en))
}

// after runs f at the call's exit with its return value; f returns the
// value to return instead.
func (c *call) after(f func(ret int64) int64) { c.posts = append(c.posts, f) }

// put writes data to the scratch area and returns its address.
func (c *call) put(data []byte) (uint64, error) {
	n := (uint64(len(data)) + 15) &^ 15
	if c.used+n > scratchSize {
		return 0, unix.E2BIG
	}
	addr := c.t.scratch + c.used
	if err := writeMem(c.t.tid, addr, data); err != nil {
		return 0, err
	}
	c.used += n
	return addr, nil
}

func (c *call) putString(s string) (uint64, error) { return c.put(append([]byte(s), 0)) }

// inScratch reports whether addr points into the thread's scratch area
// (a restarted call whose arguments were rewritten already).
func (c *call) inScratch(addr uint64) bool {
	return c.t.scratch != 0 && addr >= c.t.scratch && addr < c.t.scratch+scratchSize
}

// cwd is the guest path of the thread's working directory.
func (c *call) cwd() (string, error) {
	h, err := procLink(c.t.tid, "cwd")
	if err != nil {
		return "", err
	}
	g := c.tr.view.guestOf(h)
	if g == "" {
		return "", unix.ENOENT
	}
	return g, nil
}

// base is the guest directory a relative path is taken from: the
// working directory or the directory fd.
func (c *call) base(dirfd int64) (string, error) {
	if int32(dirfd) == unix.AT_FDCWD {
		return c.cwd()
	}
	h, err := readlink(fdPath(c.t.tid, int(int32(dirfd))))
	if err != nil {
		return "", unix.EBADF
	}
	g := c.tr.view.guestOf(h)
	if g == "" {
		return "", unix.ENOTDIR
	}
	return g, nil
}

// pathArg is a translated path argument.
type pathArg struct {
	host, guest string
	given       string // as the process gave it
	ok          bool   // translated (false: left alone)
}

// guestPath reads path argument pi (relative to dirfd argument di, or the
// working directory when di < 0) and makes it absolute.
func (c *call) guestPath(di, pi int) (given, abs string, ok bool, err error) {
	addr := arg(&c.r, pi)
	if addr == 0 || c.inScratch(addr) {
		return "", "", false, nil
	}
	p, err := readString(c.t.tid, addr, unix.PathMax)
	if err != nil {
		return "", "", false, err
	}
	if p == "" {
		return "", "", false, nil
	}
	if strings.HasPrefix(p, "/") {
		return p, p, true, nil
	}
	dirfd := int64(unix.AT_FDCWD)
	if di >= 0 {
		dirfd = int64(arg(&c.r, di))
	}
	b, err := c.base(dirfd)
	if err != nil {
		return "", "", false, err
	}
	abs = path.Join(b, p)
	if strings.HasSuffix(p, "/") {
		abs += "/"
	}
	return p, abs, true, nil
}

// path translates path argument pi (dirfd argument di, -1 for none)
// into the root and rewrites it.
func (c *call) path(di, pi int, follow bool) (pathArg, error) {
	given, abs, ok, err := c.guestPath(di, pi)
	if err != nil || !ok {
		return pathArg{}, err
	}
	host, guest, err := c.tr.view.resolve(abs, follow)
	if err != nil {
		return pathArg{}, err
	}
	c.hosts = append(c.hosts, host)
	addr, err := c.putString(host)
	if err != nil {
		return pathArg{}, err
	}
	setArg(&c.r, pi, addr)
	c.changed = true
	return pathArg{host: host, guest: guest, given: given, ok: true}, nil
}

// resolveOnly translates path argument pi without rewriting it.
func (c *call) resolveOnly(di, pi int, follow bool) (pathArg, error) {
	given, abs, ok, err := c.guestPath(di, pi)
	if err != nil || !ok {
		return pathArg{}, err
	}
	host, guest, err := c.tr.view.resolve(abs, follow)
	if err != nil {
		return pathArg{}, err
	}
	c.hosts = append(c.hosts, host)
	return pathArg{host: host, guest: guest, given: given, ok: true}, nil
}

// asRoot reports whether the thread acts as root for file access.
func (c *call) asRoot() bool { return c.t.cred.fsuid == 0 }

// grant makes the file at host (the real user's) allow bits (of 0o700)
// for the length of the call, as root would be allowed anyway.
func (c *call) grant(host string, bits uint32, follow bool) {
	if !c.asRoot() {
		return
	}
	var st unix.Stat_t
	var err error
	if follow {
		err = unix.Stat(host, &st)
	} else {
		err = unix.Lstat(host, &st)
	}
	if err != nil || st.Uid != c.tr.table.UID || st.Mode&unix.S_IFMT == unix.S_IFLNK || st.Mode&bits == bits {
		return
	}
	perm := st.Mode & 0o7777
	if unix.Chmod(host, perm|bits) != nil {
		return
	}
	c.after(func(ret int64) int64 {
		_ = unix.Chmod(host, perm)
		return ret
	})
}

// grantParent lets root create and remove entries in host's directory.
func (c *call) grantParent(host string) {
	c.grant(path.Dir(host), 0o300, true)
}

// created records, after a call that may create host, the creator as its
// owner (an inode number reused from a deleted file loses its old entry).
func (c *call) created(host string, follow bool) {
	var before unix.Stat_t
	if unix.Lstat(host, &before) == nil {
		return // it exists: not created by this call
	}
	cr := c.t.cred
	c.after(func(ret int64) int64 {
		if ret < 0 {
			return ret
		}
		var st unix.Stat_t
		var err error
		if follow {
			err = unix.Stat(host, &st)
		} else {
			err = unix.Lstat(host, &st)
		}
		if err == nil && st.Uid == c.tr.table.UID {
			o := c.tr.table.Owners[keyOf(&st)]
			o.UID, o.GID = cr.fsuid, cr.fsgid
			o.Type, o.Rdev = 0, 0
			c.tr.table.set(keyOf(&st), o)
		}
		return ret
	})
}

// refuseReadOnly answers EROFS when the call would change a read-only
// bind.
func (c *call) refuseReadOnly() {
	if !c.writes {
		return
	}
	for _, h := range c.hosts {
		if c.tr.view.readOnly(h) {
			for _, p := range c.posts {
				p(-1)
			}
			c.posts = nil
			c.skipped = false
			_ = c.skip(-int64(unix.EROFS))
			return
		}
	}
}
