//go:build linux && (amd64 || arm64)

package ptrace

import (
	"encoding/binary"
	"regexp"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

func (c *call) open(di, pi int, flags uint64) error {
	c.writes = flags&(unix.O_WRONLY|unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC) != 0
	follow := flags&unix.O_NOFOLLOW == 0 && flags&(unix.O_CREAT|unix.O_EXCL) != unix.O_CREAT|unix.O_EXCL
	p, err := c.path(di, pi, follow)
	if err != nil || !p.ok {
		return err
	}
	if strings.HasPrefix(p.host, c.tr.view.root) {
		if flags&unix.O_TMPFILE == unix.O_TMPFILE {
			c.grant(p.host, 0o300, true)
			cr := c.t.cred
			c.after(func(ret int64) int64 {
				if ret >= 0 {
					c.ownFile(fdPath(c.t.tid, int(ret)), cr)
				}
				return ret
			})
			return nil
		}
		var bits uint32
		switch flags & unix.O_ACCMODE {
		case unix.O_RDONLY:
			bits = 0o400
		case unix.O_WRONLY:
			bits = 0o200
		default:
			bits = 0o600
		}
		if flags&unix.O_TRUNC != 0 {
			bits |= 0o200
		}
		if flags&unix.O_CREAT != 0 {
			c.grantParent(p.host)
			c.created(p.host, follow)
		}
		if flags&unix.O_PATH == 0 {
			c.grant(p.host, bits, follow)
		}
	}
	return nil
}

// ownFile records cr as the owner of the file at host (followed).
func (c *call) ownFile(host string, cr *cred) {
	var st unix.Stat_t
	if unix.Stat(host, &st) == nil && st.Uid == c.tr.table.UID {
		c.tr.table.set(keyOf(&st), Owner{UID: cr.fsuid, GID: cr.fsgid})
	}
}

// statxArgs are statx's flags and mask.
type statxArgs struct {
	flags int
	mask  uint32
}

// stat answers the stat family in the tracer: it stats the translated
// path (or the descriptor: di is the fd when pi < 0, or the dirfd of an
// empty path with AT_EMPTY_PATH), fixes the owners from the table and
// writes the result, without running the call (one stop, not two).
func (c *call) stat(di, pi int, follow, emptyPath bool, buf uint64, sx *statxArgs) error {
	var host string
	switch {
	case pi < 0:
		host = fdPath(c.t.tid, di)
	default:
		p, err := c.resolveOnly(di, pi, follow)
		if err != nil {
			return err
		}
		if p.ok {
			host = c.tracerPath(p.host)
			break
		}
		if addr := arg(&c.r, pi); addr == 0 || !emptyPath || c.inScratch(addr) {
			return nil // the kernel answers (EFAULT, ENOENT)
		}
		host, follow = fdPath(c.t.tid, int(int32(arg(&c.r, di)))), true
		if int32(arg(&c.r, di)) == unix.AT_FDCWD {
			host = "/proc/" + strconv.Itoa(c.t.tid) + "/cwd"
		}
	}
	fdLink := pi < 0 || !strings.HasPrefix(host, c.tr.view.root)
	var b []byte
	var err error
	if sx == nil {
		var st unix.Stat_t
		if follow {
			err = unix.Stat(host, &st)
		} else {
			err = unix.Lstat(host, &st)
		}
		c.tr.table.Fix(&st)
		b = unsafe.Slice((*byte)(unsafe.Pointer(&st)), unsafe.Sizeof(st))
		b = append([]byte(nil), b...)
	} else {
		var st unix.Statx_t
		fl := sx.flags &^ (unix.AT_EMPTY_PATH | unix.AT_SYMLINK_NOFOLLOW)
		if !follow {
			fl |= unix.AT_SYMLINK_NOFOLLOW
		}
		err = unix.Statx(unix.AT_FDCWD, host, fl, int(sx.mask), &st)
		c.fixStatx(&st)
		b = unsafe.Slice((*byte)(unsafe.Pointer(&st)), unsafe.Sizeof(st))
		b = append([]byte(nil), b...)
	}
	if err != nil {
		if err == unix.ENOENT && fdLink && pi < 0 {
			err = unix.EBADF
		}
		return c.fail(err)
	}
	if err := writeMem(c.t.tid, buf, b); err != nil {
		return c.skip(-int64(unix.EFAULT))
	}
	return c.skip(0)
}

// tracerPath is host as the tracer must name it: /proc/self is the
// traced thread's, not the tracer's.
func (c *call) tracerPath(host string) string {
	me := "/proc/" + strconv.Itoa(c.t.tid)
	for _, self := range []string{"/proc/self", "/proc/thread-self", "/dev/fd"} {
		if host == self || strings.HasPrefix(host, self+"/") {
			if self == "/dev/fd" {
				return me + "/fd" + host[len(self):]
			}
			return me + host[len(self):]
		}
	}
	for i, std := range []string{"/dev/stdin", "/dev/stdout", "/dev/stderr"} {
		if host == std {
			return me + "/fd/" + strconv.Itoa(i)
		}
	}
	return host
}

// fixStatx is Table.Fix for a statx result.
func (c *call) fixStatx(sx *unix.Statx_t) {
	if sx.Uid != c.tr.table.UID {
		return
	}
	st := unix.Stat_t{Dev: unix.Mkdev(sx.Dev_major, sx.Dev_minor), Ino: sx.Ino, Uid: sx.Uid, Gid: sx.Gid, Mode: uint32(sx.Mode)}
	c.tr.table.Fix(&st)
	sx.Uid, sx.Gid, sx.Mode = st.Uid, st.Gid, uint16(st.Mode)
	if st.Rdev != 0 {
		sx.Rdev_major, sx.Rdev_minor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
	}
}

// access answers as root would: existing files are readable and
// writable, executable when any x bit is set.
func (c *call) access(di, pi int, mode, flags uint64) error {
	p, err := c.path(di, pi, flags&atNoFollow == 0)
	if err != nil || !p.ok {
		return err
	}
	id := c.t.cred.ruid
	if flags&unix.AT_EACCESS != 0 {
		id = c.t.cred.euid
	}
	if id != 0 || !strings.HasPrefix(p.host, c.tr.view.root) {
		return nil
	}
	var st unix.Stat_t
	if flags&atNoFollow != 0 {
		err = unix.Lstat(p.host, &st)
	} else {
		err = unix.Stat(p.host, &st)
	}
	if err != nil {
		return c.fail(err)
	}
	if mode&unix.X_OK != 0 && st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Mode&0o111 == 0 {
		return c.skip(-int64(unix.EACCES))
	}
	return c.skip(0)
}

// create handles mkdir and symlink: the new entry is the creator's.
func (c *call) create(di, pi int) error {
	p, err := c.path(di, pi, false)
	if err != nil || !p.ok {
		return err
	}
	c.grantParent(p.host)
	c.created(p.host, false)
	return nil
}

// mknod of a device makes an empty regular placeholder recorded as the
// device.
func (c *call) mknod(di, pi, mi, dvi int) error {
	p, err := c.path(di, pi, false)
	if err != nil || !p.ok {
		return err
	}
	mode := uint32(arg(&c.r, mi))
	typ := mode & unix.S_IFMT
	c.grantParent(p.host)
	if typ != unix.S_IFCHR && typ != unix.S_IFBLK {
		c.created(p.host, false)
		return nil
	}
	if !c.asRoot() {
		return c.skip(-int64(unix.EPERM))
	}
	rdev := arg(&c.r, dvi)
	setArg(&c.r, mi, uint64(unix.S_IFREG|mode&0o7777))
	setArg(&c.r, dvi, 0)
	cr := c.t.cred
	host := p.host
	c.after(func(ret int64) int64 {
		var st unix.Stat_t
		if ret == 0 && unix.Lstat(host, &st) == nil {
			c.tr.table.set(keyOf(&st), Owner{UID: cr.fsuid, GID: cr.fsgid, Type: typ, Rdev: rdev})
		}
		return ret
	})
	return nil
}

func (c *call) remove(di, pi int) error {
	p, err := c.path(di, pi, false)
	if err != nil || !p.ok {
		return err
	}
	c.grantParent(p.host)
	return nil
}

// twoPaths handles rename and link.
func (c *call) twoPaths(d1, p1, d2, p2 int, follow1 bool) error {
	a, err := c.path(d1, p1, follow1)
	if err != nil {
		return err
	}
	b, err := c.path(d2, p2, false)
	if err != nil {
		return err
	}
	if a.ok {
		c.grantParent(a.host)
	}
	if b.ok && (!a.ok || dirOf(b.host) != dirOf(a.host)) {
		c.grantParent(b.host)
	}
	return nil
}

func dirOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return "/"
}

var procLinkRe = regexp.MustCompile(`^/proc/(self|thread-self|[0-9]+)(/task/[0-9]+)?/(exe|cwd|root|fd/[0-9]+|map_files/.*)$`)

// readlink translates the path, and a /proc link's host target back.
func (c *call) readlink(di, pi, bi, si int) error {
	p, err := c.path(di, pi, false)
	if err != nil || !p.ok {
		return err
	}
	m := procLinkRe.FindStringSubmatch(p.guest)
	if m == nil {
		return nil
	}
	buf, size := arg(&c.r, bi), int64(arg(&c.r, si))
	exe := ""
	if m[3] == "exe" && (m[1] == "self" || m[1] == "thread-self" || m[1] == strconv.Itoa(c.t.tid)) {
		exe = c.t.exe
	}
	c.after(func(ret int64) int64 {
		if ret < 0 {
			return ret
		}
		target := exe
		if target == "" {
			b := make([]byte, ret)
			if readMem(c.t.tid, buf, b) != nil {
				return ret
			}
			target = c.tr.view.guestOf(string(b))
			if target == "" {
				return ret
			}
		}
		out := []byte(target)
		if int64(len(out)) > size {
			out = out[:size]
		}
		if writeMem(c.t.tid, buf, out) != nil {
			return ret
		}
		return int64(len(out))
	})
	return nil
}

func (c *call) getcwd() {
	buf, size := arg(&c.r, 0), int64(arg(&c.r, 1))
	c.after(func(ret int64) int64 {
		if ret <= 0 {
			return ret
		}
		h, err := readString(c.t.tid, buf, int(ret))
		if err != nil {
			return ret
		}
		g := c.tr.view.guestOf(h)
		if g == "" {
			return -int64(unix.ENOENT)
		}
		if int64(len(g))+1 > size {
			return -int64(unix.ERANGE)
		}
		if writeMem(c.t.tid, buf, append([]byte(g), 0)) != nil {
			return ret
		}
		return int64(len(g)) + 1
	})
}

// chown records the owner in the table instead of changing it.
func (c *call) chown(di, pi, ui, gi int, follow bool) error {
	p, err := c.resolveOnly(di, pi, follow)
	if err != nil {
		return err
	}
	if !p.ok {
		// AT_EMPTY_PATH: the file of the descriptor.
		if arg(&c.r, 4)&unix.AT_EMPTY_PATH != 0 && di >= 0 {
			return c.fchown(int(int32(arg(&c.r, di))), arg(&c.r, ui), arg(&c.r, gi))
		}
		return c.skip(-int64(unix.ENOENT))
	}
	return c.record(p.host, follow, arg(&c.r, ui), arg(&c.r, gi))
}

func (c *call) fchown(fd int, u, g uint64) error {
	if int32(fd) == unix.AT_FDCWD {
		h, err := procLink(c.t.tid, "cwd")
		if err != nil {
			return c.fail(err)
		}
		return c.record(h, true, u, g)
	}
	return c.record(fdPath(c.t.tid, fd), true, u, g)
}

func (c *call) record(host string, follow bool, u, g uint64) error {
	if !c.asRoot() && c.t.cred.euid != 0 {
		return c.skip(-int64(unix.EPERM))
	}
	host = c.tracerPath(host)
	var st unix.Stat_t
	var err error
	if follow {
		err = unix.Stat(host, &st)
	} else {
		err = unix.Lstat(host, &st)
	}
	if err != nil {
		return c.fail(err)
	}
	if st.Uid != c.tr.table.UID {
		return c.skip(0) // not ours (a host device): pretend
	}
	k := keyOf(&st)
	o := c.tr.table.Owners[k]
	if int32(u) != -1 {
		o.UID = uint32(u)
	}
	if int32(g) != -1 {
		o.GID = uint32(g)
	}
	c.tr.table.set(k, o)
	// As the kernel: a chown of a regular file drops set-user-ID and
	// (with group execute) set-group-ID.
	if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 && (int32(u) != -1 || int32(g) != -1) {
		m := st.Mode &^ unix.S_ISUID
		if m&0o010 != 0 {
			m &^= unix.S_ISGID
		}
		if follow {
			_ = unix.Chmod(host, m&0o7777)
		}
	}
	return c.skip(0)
}

// sockaddr translates an AF_UNIX socket path.
func (c *call) sockaddr(ai, li int, follow bool) error {
	addr, n := arg(&c.r, ai), int(arg(&c.r, li))
	if addr == 0 || n <= 2 || n > 110 || c.inScratch(addr) {
		return nil
	}
	b := make([]byte, n)
	if err := readMem(c.t.tid, addr, b); err != nil {
		return nil
	}
	if binary.NativeEndian.Uint16(b) != unix.AF_UNIX || b[2] == 0 {
		return nil // not a path (abstract or another family)
	}
	p := string(b[2:])
	if i := strings.IndexByte(p, 0); i >= 0 {
		p = p[:i]
	}
	if !strings.HasPrefix(p, "/") {
		cwd, err := c.cwd()
		if err != nil {
			return nil
		}
		p = cwd + "/" + p
	}
	host, _, err := c.tr.view.resolve(p, follow)
	if err != nil {
		return err
	}
	if len(host) > 107 {
		return c.skip(-int64(unix.ENAMETOOLONG))
	}
	out := make([]byte, 2+len(host)+1)
	binary.NativeEndian.PutUint16(out, unix.AF_UNIX)
	copy(out[2:], host)
	a, err := c.put(out)
	if err != nil {
		return err
	}
	setArg(&c.r, ai, a)
	setArg(&c.r, li, uint64(len(out)))
	c.changed = true
	if !follow {
		c.created(host, false)
	}
	return nil
}
