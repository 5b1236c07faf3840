package confine

import "golang.org/x/sys/unix"

const auditArch = unix.AUDIT_ARCH_X86_64

// x32ABI is the bit that marks x32 system calls on amd64 (the same audit
// arch, other numbers): the step filter refuses them.
const x32ABI = 0x40000000

// archDenied are this architecture's own system calls a step may not make.
var archDenied = []int{unix.SYS_USELIB, unix.SYS__SYSCTL, unix.SYS_IOPL, unix.SYS_IOPERM,
	unix.SYS_CREATE_MODULE, unix.SYS_GET_KERNEL_SYMS, unix.SYS_QUERY_MODULE}

// mknodSyscalls: (number, index of the mode argument); dev follows mode.
var mknodSyscalls = [][2]int{{unix.SYS_MKNOD, 1}, {unix.SYS_MKNODAT, 2}}
