package ptrace

// arm64 has only the *at forms of these calls: numbers no system call
// has, so that no case of the tracer's switches matches them.
const (
	sysAccess    = -100 - 0
	sysChmod     = -100 - 1
	sysChown     = -100 - 2
	sysCreat     = -100 - 3
	sysFutimesat = -100 - 4
	sysLchown    = -100 - 5
	sysLink      = -100 - 6
	sysLstat     = -100 - 7
	sysMkdir     = -100 - 8
	sysMknod     = -100 - 9
	sysOpen      = -100 - 10
	sysReadlink  = -100 - 11
	sysRename    = -100 - 12
	sysRmdir     = -100 - 13
	sysStat      = -100 - 14
	sysSymlink   = -100 - 15
	sysUnlink    = -100 - 16
	sysUtime     = -100 - 17
	sysUtimes    = -100 - 18
)
