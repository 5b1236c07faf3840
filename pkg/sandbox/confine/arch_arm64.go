package confine

import "golang.org/x/sys/unix"

const auditArch = unix.AUDIT_ARCH_AARCH64

const x32ABI = 0

var archDenied []int

var mknodSyscalls = [][2]int{{unix.SYS_MKNODAT, 2}}
