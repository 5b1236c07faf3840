//go:build linux

package ptrace

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

const auditArch = unix.AUDIT_ARCH_AARCH64

// traced are the system calls that stop in the tracer (arm64 has only the
// *at forms of the path calls).
var traced = []uint32{
	unix.SYS_OPENAT, unix.SYS_OPENAT2,
	unix.SYS_FSTAT, unix.SYS_NEWFSTATAT, unix.SYS_STATX,
	unix.SYS_FACCESSAT, unix.SYS_FACCESSAT2,
	unix.SYS_EXECVE, unix.SYS_EXECVEAT,
	unix.SYS_READLINKAT, unix.SYS_GETCWD,
	unix.SYS_MKDIRAT, unix.SYS_UNLINKAT,
	unix.SYS_RENAMEAT, unix.SYS_RENAMEAT2,
	unix.SYS_LINKAT, unix.SYS_SYMLINKAT,
	unix.SYS_CHDIR, unix.SYS_CHROOT,
	unix.SYS_FCHMODAT, 452, // fchmodat2
	unix.SYS_FCHOWN, unix.SYS_FCHOWNAT,
	unix.SYS_UTIMENSAT,
	unix.SYS_TRUNCATE, unix.SYS_MKNODAT,
	unix.SYS_GETXATTR, unix.SYS_LGETXATTR, unix.SYS_SETXATTR, unix.SYS_LSETXATTR,
	unix.SYS_LISTXATTR, unix.SYS_LLISTXATTR, unix.SYS_REMOVEXATTR, unix.SYS_LREMOVEXATTR,
	unix.SYS_STATFS, unix.SYS_INOTIFY_ADD_WATCH, unix.SYS_BIND, unix.SYS_CONNECT,
	unix.SYS_GETUID, unix.SYS_GETEUID, unix.SYS_GETGID, unix.SYS_GETEGID,
	unix.SYS_GETRESUID, unix.SYS_GETRESGID, unix.SYS_GETGROUPS,
	unix.SYS_SETUID, unix.SYS_SETGID, unix.SYS_SETREUID, unix.SYS_SETREGID,
	unix.SYS_SETRESUID, unix.SYS_SETRESGID, unix.SYS_SETGROUPS,
	unix.SYS_SETFSUID, unix.SYS_SETFSGID,
}

// regs are a stopped thread's registers (x0-x30, sp, pc, pstate: the
// NT_PRSTATUS register set) and its system call number, which arm64
// keeps apart from x8 (the NT_ARM_SYSTEM_CALL set): a tracer changes or
// skips a call there, and x0 is both the first argument and the result.
type regs struct {
	unix.PtraceRegs
	nr int64
}

func sysno(r *regs) int64       { return r.nr }
func setSysno(r *regs, n int64) { r.nr = n }
func retval(r *regs) int64      { return int64(r.Regs[0]) }
func setRet(r *regs, v int64)   { r.Regs[0] = uint64(v) }

// arg is system call argument i (0-5): x0-x5.
func arg(r *regs, i int) uint64 { return r.Regs[i] }

func setArg(r *regs, i int, v uint64) { r.Regs[i] = v }

// rewind makes the thread execute its system call instruction again with
// the system call number nr when it resumes.
func rewind(r *regs, nr int64) {
	r.Pc -= insnSize
	r.Regs[8] = uint64(nr)
	r.nr = nr
}

func getRegs(tid int, r *regs) error {
	if err := unix.PtraceGetRegs(tid, &r.PtraceRegs); err != nil {
		return err
	}
	var nr int32
	if err := regset(unix.PTRACE_GETREGSET, tid, &nr); err != nil {
		return err
	}
	r.nr = int64(nr)
	return nil
}

func setRegs(tid int, r *regs) error {
	if err := unix.PtraceSetRegs(tid, &r.PtraceRegs); err != nil {
		return err
	}
	nr := int32(r.nr)
	return regset(unix.PTRACE_SETREGSET, tid, &nr)
}

// regset reads or writes the thread's system call number.
func regset(req, tid int, nr *int32) error {
	iov := unix.Iovec{Base: (*byte)(unsafe.Pointer(nr)), Len: 4}
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(tid), unix.NT_ARM_SYSTEM_CALL, uintptr(unsafe.Pointer(&iov)), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// insnSize is the size of the system call instruction (svc #0).
const insnSize = 4

func pc(r *regs) uint64       { return r.Pc }
func setPC(r *regs, v uint64) { r.Pc = v }

// rewound is the call a rewound thread makes (x8 at the instruction).
func rewound(r *regs) int64 { return int64(r.Regs[8]) }
