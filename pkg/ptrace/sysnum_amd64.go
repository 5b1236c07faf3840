package ptrace

import "golang.org/x/sys/unix"

// The system calls amd64 has beside the *at family (arm64 has only
// the latter: there they are numbers no call has, so no case matches).
const (
	sysAccess    = unix.SYS_ACCESS
	sysChmod     = unix.SYS_CHMOD
	sysChown     = unix.SYS_CHOWN
	sysCreat     = unix.SYS_CREAT
	sysFutimesat = unix.SYS_FUTIMESAT
	sysLchown    = unix.SYS_LCHOWN
	sysLink      = unix.SYS_LINK
	sysLstat     = unix.SYS_LSTAT
	sysMkdir     = unix.SYS_MKDIR
	sysMknod     = unix.SYS_MKNOD
	sysOpen      = unix.SYS_OPEN
	sysReadlink  = unix.SYS_READLINK
	sysRename    = unix.SYS_RENAME
	sysRmdir     = unix.SYS_RMDIR
	sysStat      = unix.SYS_STAT
	sysSymlink   = unix.SYS_SYMLINK
	sysUnlink    = unix.SYS_UNLINK
	sysUtime     = unix.SYS_UTIME
	sysUtimes    = unix.SYS_UTIMES
)
