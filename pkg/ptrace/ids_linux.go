//go:build linux && (amd64 || arm64)

package ptrace

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// identity emulates the uid and gid calls: the process is root until it
// sets other ids, which are recorded, never applied.
func (c *call) identity() error {
	cr := c.t.cred
	a := func(i int) uint32 { return uint32(arg(&c.r, i)) }
	root := cr.euid == 0
	switch c.nr {
	case unix.SYS_GETUID:
		return c.skip(int64(cr.ruid))
	case unix.SYS_GETEUID:
		return c.skip(int64(cr.euid))
	case unix.SYS_GETGID:
		return c.skip(int64(cr.rgid))
	case unix.SYS_GETEGID:
		return c.skip(int64(cr.egid))
	case unix.SYS_GETRESUID, unix.SYS_GETRESGID:
		v := [3]uint32{cr.ruid, cr.euid, cr.suid}
		if c.nr == unix.SYS_GETRESGID {
			v = [3]uint32{cr.rgid, cr.egid, cr.sgid}
		}
		for i, x := range v {
			var b [4]byte
			binary.NativeEndian.PutUint32(b[:], x)
			if err := writeMem(c.t.tid, arg(&c.r, i), b[:]); err != nil {
				return c.skip(-int64(unix.EFAULT))
			}
		}
		return c.skip(0)
	case unix.SYS_GETGROUPS:
		n := int(int32(a(0)))
		if n == 0 {
			return c.skip(int64(len(cr.groups)))
		}
		if n < len(cr.groups) {
			return c.skip(-int64(unix.EINVAL))
		}
		b := make([]byte, 4*len(cr.groups))
		for i, g := range cr.groups {
			binary.NativeEndian.PutUint32(b[4*i:], g)
		}
		if err := writeMem(c.t.tid, arg(&c.r, 1), b); err != nil {
			return c.skip(-int64(unix.EFAULT))
		}
		return c.skip(int64(len(cr.groups)))
	case unix.SYS_SETGROUPS:
		if !root {
			return c.skip(-int64(unix.EPERM))
		}
		n := int(int32(a(0)))
		if n < 0 || n > 65536 {
			return c.skip(-int64(unix.EINVAL))
		}
		b := make([]byte, 4*n)
		if err := readMem(c.t.tid, arg(&c.r, 1), b); err != nil {
			return c.skip(-int64(unix.EFAULT))
		}
		cr.groups = cr.groups[:0]
		for i := 0; i < n; i++ {
			cr.groups = append(cr.groups, binary.NativeEndian.Uint32(b[4*i:]))
		}
		return c.skip(0)
	case unix.SYS_SETUID:
		u := a(0)
		if root {
			cr.ruid, cr.euid, cr.suid, cr.fsuid = u, u, u, u
		} else if u == cr.ruid || u == cr.suid {
			cr.euid, cr.fsuid = u, u
		} else {
			return c.skip(-int64(unix.EPERM))
		}
		return c.skip(0)
	case unix.SYS_SETGID:
		g := a(0)
		if root {
			cr.rgid, cr.egid, cr.sgid, cr.fsgid = g, g, g, g
		} else if g == cr.rgid || g == cr.sgid {
			cr.egid, cr.fsgid = g, g
		} else {
			return c.skip(-int64(unix.EPERM))
		}
		return c.skip(0)
	case unix.SYS_SETREUID, unix.SYS_SETRESUID:
		r, e, sv := cr.ruid, cr.euid, cr.suid
		if !setIDs(root, c.nr == unix.SYS_SETRESUID, [3]uint32{a(0), a(1), a(2)}, &r, &e, &sv) {
			return c.skip(-int64(unix.EPERM))
		}
		cr.ruid, cr.euid, cr.suid, cr.fsuid = r, e, sv, e
		return c.skip(0)
	case unix.SYS_SETREGID, unix.SYS_SETRESGID:
		r, e, sv := cr.rgid, cr.egid, cr.sgid
		if !setIDs(root, c.nr == unix.SYS_SETRESGID, [3]uint32{a(0), a(1), a(2)}, &r, &e, &sv) {
			return c.skip(-int64(unix.EPERM))
		}
		cr.rgid, cr.egid, cr.sgid, cr.fsgid = r, e, sv, e
		return c.skip(0)
	case unix.SYS_SETFSUID:
		old := cr.fsuid
		if root && int32(a(0)) != -1 {
			cr.fsuid = a(0)
		}
		return c.skip(int64(old))
	case unix.SYS_SETFSGID:
		old := cr.fsgid
		if root && int32(a(0)) != -1 {
			cr.fsgid = a(0)
		}
		return c.skip(int64(old))
	}
	return nil
}

// setIDs applies setres*id (res) or setre*id to the real, effective and
// saved ids with the kernel's rules: without privilege every new id must
// be one of the current three (setre*id: the real one the real or
// effective id).
func setIDs(priv, res bool, v [3]uint32, r, e, s *uint32) bool {
	cur := [3]uint32{*r, *e, *s}
	allowed := func(x uint32) bool { return priv || x == cur[0] || x == cur[1] || x == cur[2] }
	if !res {
		v[2] = ^uint32(0)
		if int32(v[0]) != -1 && !priv && v[0] != cur[0] && v[0] != cur[1] {
			return false
		}
	}
	for _, x := range v {
		if int32(x) != -1 && !allowed(x) {
			return false
		}
	}
	if int32(v[0]) != -1 {
		*r = v[0]
	}
	if int32(v[1]) != -1 {
		*e = v[1]
	}
	if int32(v[2]) != -1 {
		*s = v[2]
	} else if !res && (int32(v[0]) != -1 || (int32(v[1]) != -1 && v[1] != cur[0])) {
		*s = *e // setre*id: the saved id follows the new effective id
	}
	return true
}
