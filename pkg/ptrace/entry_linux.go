//go:build linux && (amd64 || arm64)

package ptrace

import (
	"golang.org/x/sys/unix"
)

// entry handles a seccomp stop: a traced call is about to run.
func (tr *tracer) entry(t *thread) {
	c := &call{tr: tr, t: t}
	if err := getRegs(t.tid, &c.r); err != nil {
		resume(t.tid, 0)
		return
	}
	c.nr = sysno(&c.r)
	if needsScratch(c.nr) && t.scratch == 0 {
		tr.inject(t, &c.r)
		return
	}
	c.writes = writes(c.nr)
	if err := tr.handle(c); err != nil && err != errSkip {
		_ = c.fail(err)
	}
	c.refuseReadOnly()
	if c.changed {
		if err := setRegs(t.tid, &c.r); err != nil {
			resume(t.tid, 0)
			return
		}
	}
	if len(c.posts) == 0 || c.skipped {
		for _, p := range c.posts { // undo grants of a call not run
			p(-1)
		}
		resume(t.tid, 0)
		return
	}
	posts := c.posts
	t.post = func(r *regs) {
		ret := retval(r)
		if ret <= -512 && ret >= -516 {
			// Interrupted, restarted by the kernel: the entry comes again
			// (its arguments already rewritten, and recognised as such).
			for _, p := range posts {
				p(-1)
			}
			return
		}
		out := ret
		for _, p := range posts {
			out = p(out)
		}
		if out != ret {
			setRet(r, out)
			_ = setRegs(t.tid, r)
		}
	}
	_ = unix.PtraceSyscall(t.tid, 0)
}

// needsScratch reports whether handling nr may rewrite an argument.
func needsScratch(nr int64) bool {
	switch nr {
	case unix.SYS_GETUID, unix.SYS_GETEUID, unix.SYS_GETGID, unix.SYS_GETEGID,
		unix.SYS_GETRESUID, unix.SYS_GETRESGID, unix.SYS_GETGROUPS,
		unix.SYS_SETUID, unix.SYS_SETGID, unix.SYS_SETREUID, unix.SYS_SETREGID,
		unix.SYS_SETRESUID, unix.SYS_SETRESGID, unix.SYS_SETGROUPS,
		unix.SYS_SETFSUID, unix.SYS_SETFSGID, unix.SYS_FSTAT, unix.SYS_FCHOWN, unix.SYS_GETCWD,
		sysStat, sysLstat, unix.SYS_NEWFSTATAT, unix.SYS_STATX:
		return false
	}
	return true
}

const atNoFollow = unix.AT_SYMLINK_NOFOLLOW

// handle dispatches one call.
func (tr *tracer) handle(c *call) error {
	r := &c.r
	a := func(i int) uint64 { return arg(r, i) }
	follow := func(flagArg int, bit uint64) bool { return a(flagArg)&bit == 0 }
	switch c.nr {
	case sysOpen:
		return c.open(-1, 0, a(1))
	case sysCreat:
		return c.open(-1, 0, unix.O_CREAT|unix.O_WRONLY|unix.O_TRUNC)
	case unix.SYS_OPENAT:
		return c.open(0, 1, a(2))
	case unix.SYS_OPENAT2:
		flags, err := readU64(c.t.tid, a(2))
		if err != nil {
			return err
		}
		return c.open(0, 1, flags)

	case sysStat, sysLstat:
		return c.stat(-1, 0, c.nr == sysStat, false, a(1), nil)
	case unix.SYS_FSTAT:
		return c.stat(int(int32(a(0))), -1, true, true, a(1), nil)
	case unix.SYS_NEWFSTATAT:
		return c.stat(0, 1, follow(3, atNoFollow), a(3)&unix.AT_EMPTY_PATH != 0, a(2), nil)
	case unix.SYS_STATX:
		sx := &statxArgs{flags: int(a(2)), mask: uint32(a(3))}
		return c.stat(0, 1, follow(2, atNoFollow), a(2)&unix.AT_EMPTY_PATH != 0, a(4), sx)

	case sysAccess:
		return c.access(-1, 0, a(1), 0)
	case unix.SYS_FACCESSAT:
		return c.access(0, 1, a(2), 0)
	case unix.SYS_FACCESSAT2:
		return c.access(0, 1, a(2), a(3))

	case unix.SYS_EXECVE:
		return c.execve(-1, 0, 1, true)
	case unix.SYS_EXECVEAT:
		return c.execve(0, 1, 2, follow(4, atNoFollow))

	case sysReadlink:
		return c.readlink(-1, 0, 1, 2)
	case unix.SYS_READLINKAT:
		return c.readlink(0, 1, 2, 3)
	case unix.SYS_GETCWD:
		c.getcwd()

	case sysMkdir:
		return c.create(-1, 0)
	case unix.SYS_MKDIRAT:
		return c.create(0, 1)
	case sysSymlink:
		return c.create(-1, 1)
	case unix.SYS_SYMLINKAT:
		return c.create(1, 2)
	case sysMknod:
		return c.mknod(-1, 0, 1, 2)
	case unix.SYS_MKNODAT:
		return c.mknod(0, 1, 2, 3)
	case sysRmdir, sysUnlink:
		return c.remove(-1, 0)
	case unix.SYS_UNLINKAT:
		return c.remove(0, 1)
	case sysRename:
		return c.twoPaths(-1, 0, -1, 1, false)
	case unix.SYS_RENAMEAT, unix.SYS_RENAMEAT2:
		return c.twoPaths(0, 1, 2, 3, false)
	case sysLink:
		return c.twoPaths(-1, 0, -1, 1, false)
	case unix.SYS_LINKAT:
		return c.twoPaths(0, 1, 2, 3, a(4)&unix.AT_SYMLINK_FOLLOW != 0)

	case unix.SYS_CHDIR, unix.SYS_TRUNCATE, sysUtime, sysUtimes, unix.SYS_STATFS,
		unix.SYS_GETXATTR, unix.SYS_SETXATTR, unix.SYS_LISTXATTR, unix.SYS_REMOVEXATTR:
		_, err := c.path(-1, 0, true)
		return err
	case unix.SYS_LGETXATTR, unix.SYS_LSETXATTR, unix.SYS_LLISTXATTR, unix.SYS_LREMOVEXATTR:
		_, err := c.path(-1, 0, false)
		return err
	case sysChmod:
		_, err := c.path(-1, 0, true)
		return err
	case unix.SYS_FCHMODAT:
		_, err := c.path(0, 1, true)
		return err
	case 452: // fchmodat2
		_, err := c.path(0, 1, follow(3, atNoFollow))
		return err
	case sysFutimesat:
		_, err := c.path(0, 1, true)
		return err
	case unix.SYS_UTIMENSAT:
		_, err := c.path(0, 1, follow(3, atNoFollow))
		return err
	case unix.SYS_INOTIFY_ADD_WATCH:
		_, err := c.path(-1, 1, follow(2, unix.IN_DONT_FOLLOW))
		return err
	case unix.SYS_CHROOT:
		p, err := c.resolveOnly(-1, 0, true)
		if err != nil {
			return err
		}
		if p.ok && p.guest == "/" {
			return c.skip(0)
		}
		return c.skip(-int64(unix.EPERM))

	case sysChown:
		return c.chown(-1, 0, 1, 2, true)
	case sysLchown:
		return c.chown(-1, 0, 1, 2, false)
	case unix.SYS_FCHOWNAT:
		return c.chown(0, 1, 2, 3, follow(4, atNoFollow))
	case unix.SYS_FCHOWN:
		return c.fchown(int(int32(a(0))), a(1), a(2))

	case unix.SYS_BIND, unix.SYS_CONNECT:
		return c.sockaddr(1, 2, c.nr == unix.SYS_CONNECT)

	default:
		return c.identity()
	}
	return nil
}

// writes reports whether nr changes the files its paths name (open:
// decided by its flags).
func writes(nr int64) bool {
	switch nr {
	case sysCreat, sysMkdir, unix.SYS_MKDIRAT, sysRmdir, sysUnlink, unix.SYS_UNLINKAT,
		sysRename, unix.SYS_RENAMEAT, unix.SYS_RENAMEAT2, sysLink, unix.SYS_LINKAT,
		sysSymlink, unix.SYS_SYMLINKAT, sysMknod, unix.SYS_MKNODAT,
		sysChmod, unix.SYS_FCHMODAT, 452, unix.SYS_TRUNCATE,
		sysUtime, sysUtimes, sysFutimesat, unix.SYS_UTIMENSAT,
		unix.SYS_SETXATTR, unix.SYS_LSETXATTR, unix.SYS_REMOVEXATTR, unix.SYS_LREMOVEXATTR,
		sysChown, sysLchown, unix.SYS_FCHOWNAT:
		return true
	}
	return false
}
