package ptrace

import "golang.org/x/sys/unix"

const auditArch = unix.AUDIT_ARCH_X86_64

// traced are the system calls that stop in the tracer: those with path
// arguments or results, the stat and chown families, and the identity
// calls.
var traced = []uint32{
	unix.SYS_OPEN, unix.SYS_CREAT, unix.SYS_OPENAT, unix.SYS_OPENAT2,
	unix.SYS_STAT, unix.SYS_LSTAT, unix.SYS_FSTAT, unix.SYS_NEWFSTATAT, unix.SYS_STATX,
	unix.SYS_ACCESS, unix.SYS_FACCESSAT, unix.SYS_FACCESSAT2,
	unix.SYS_EXECVE, unix.SYS_EXECVEAT,
	unix.SYS_READLINK, unix.SYS_READLINKAT, unix.SYS_GETCWD,
	unix.SYS_MKDIR, unix.SYS_MKDIRAT, unix.SYS_RMDIR, unix.SYS_UNLINK, unix.SYS_UNLINKAT,
	unix.SYS_RENAME, unix.SYS_RENAMEAT, unix.SYS_RENAMEAT2,
	unix.SYS_LINK, unix.SYS_LINKAT, unix.SYS_SYMLINK, unix.SYS_SYMLINKAT,
	unix.SYS_CHDIR, unix.SYS_CHROOT,
	unix.SYS_CHMOD, unix.SYS_FCHMODAT, 452, // fchmodat2
	unix.SYS_CHOWN, unix.SYS_LCHOWN, unix.SYS_FCHOWN, unix.SYS_FCHOWNAT,
	unix.SYS_UTIME, unix.SYS_UTIMES, unix.SYS_FUTIMESAT, unix.SYS_UTIMENSAT,
	unix.SYS_TRUNCATE, unix.SYS_MKNOD, unix.SYS_MKNODAT,
	unix.SYS_GETXATTR, unix.SYS_LGETXATTR, unix.SYS_SETXATTR, unix.SYS_LSETXATTR,
	unix.SYS_LISTXATTR, unix.SYS_LLISTXATTR, unix.SYS_REMOVEXATTR, unix.SYS_LREMOVEXATTR,
	unix.SYS_STATFS, unix.SYS_INOTIFY_ADD_WATCH, unix.SYS_BIND, unix.SYS_CONNECT,
	unix.SYS_GETUID, unix.SYS_GETEUID, unix.SYS_GETGID, unix.SYS_GETEGID,
	unix.SYS_GETRESUID, unix.SYS_GETRESGID, unix.SYS_GETGROUPS,
	unix.SYS_SETUID, unix.SYS_SETGID, unix.SYS_SETREUID, unix.SYS_SETREGID,
	unix.SYS_SETRESUID, unix.SYS_SETRESGID, unix.SYS_SETGROUPS,
	unix.SYS_SETFSUID, unix.SYS_SETFSGID,
}

// regs are a stopped thread's registers.
type regs = unix.PtraceRegs

func sysno(r *regs) int64       { return int64(r.Orig_rax) }
func setSysno(r *regs, n int64) { r.Orig_rax = uint64(n) }
func retval(r *regs) int64      { return int64(r.Rax) }
func setRet(r *regs, v int64)   { r.Rax = uint64(v) }

// arg is system call argument i (0-5).
func arg(r *regs, i int) uint64 {
	switch i {
	case 0:
		return r.Rdi
	case 1:
		return r.Rsi
	case 2:
		return r.Rdx
	case 3:
		return r.R10
	case 4:
		return r.R8
	}
	return r.R9
}

func setArg(r *regs, i int, v uint64) {
	switch i {
	case 0:
		r.Rdi = v
	case 1:
		r.Rsi = v
	case 2:
		r.Rdx = v
	case 3:
		r.R10 = v
	case 4:
		r.R8 = v
	default:
		r.R9 = v
	}
}

// rewind makes the thread execute its system call instruction again with
// the system call number nr when it resumes.
func rewind(r *regs, nr int64) {
	r.Rip -= insnSize
	r.Rax = uint64(nr)
}

func getRegs(tid int, r *regs) error { return unix.PtraceGetRegs(tid, r) }
func setRegs(tid int, r *regs) error { return unix.PtraceSetRegs(tid, r) }

// insnSize is the size of the system call instruction (syscall).
const insnSize = 2

func pc(r *regs) uint64       { return r.Rip }
func setPC(r *regs, v uint64) { r.Rip = v }

// rewound is the call a rewound thread makes (rax at the instruction).
func rewound(r *regs) int64 { return int64(r.Rax) }
