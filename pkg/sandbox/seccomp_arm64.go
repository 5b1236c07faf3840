package sandbox

import "golang.org/x/sys/unix"

const auditArch = unix.AUDIT_ARCH_AARCH64

var chownSyscalls = []int{unix.SYS_FCHOWN, unix.SYS_FCHOWNAT}
