//go:build linux && (amd64 || arm64)

package ptrace

import (
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/pkg/sandbox/confine"
)

// stepFilter is the step's own filter in ptrace mode (package confine):
// docker's default shape, no ptrace (the host's processes are in reach
// without a pid namespace); mknod and chroot are emulated by the tracer.
var stepFilter = confine.Filter{NoPtrace: true, AllowDevices: true}

// stubArg0 is argv[0] of the process that becomes the traced command.
const stubArg0 = "kiln-ptrace-stub"

// stubMain waits until the tracer has seized it (fd 3 is closed by the
// tracer), installs the filter on its one thread and executes the command
// (argv[1] is the program's guest path, argv[2:] its argv).
func stubMain() int {
	runtime.LockOSThread()
	var b [1]byte
	f := os.NewFile(3, "ready")
	_, _ = f.Read(b[:])
	f.Close()
	// What a step gets in every mode (package confine): docker's default
	// capabilities at most (no raw sockets on the host's network), and a
	// filter of docker's default shape (no ptrace: the host's processes
	// are in reach; mknod and chroot are emulated by the tracer).
	if err := confine.DropCaps(confine.CapNetRaw, confine.CapSysChroot); err != nil {
		fmt.Fprintln(os.Stderr, "kiln: ptrace stub: dropping capabilities:", err)
		return 127
	}
	if err := stepFilter.Install(); err != nil {
		fmt.Fprintln(os.Stderr, "kiln: ptrace stub:", err)
		return 127
	}
	if err := installFilter(); err != nil {
		fmt.Fprintln(os.Stderr, "kiln: ptrace stub:", err)
		return 127
	}
	// Nothing but stdin, stdout and stderr reaches the command.
	_ = unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	if len(os.Args) < 3 {
		// A probe: the tracer answers getuid with probeUID.
		if unix.Getuid() == probeUID {
			return 0
		}
		return 3
	}
	err := unix.Exec(os.Args[1], os.Args[2:], os.Environ())
	fmt.Fprintf(os.Stderr, "kiln: exec %s: %v\n", os.Args[2], err)
	if err == unix.ENOENT {
		return 127
	}
	return 126
}

// installFilter sets no_new_privs and a seccomp filter on the calling
// thread that stops the traced calls in the tracer and allows the rest.
// Calls of another architecture (i386, x32) would escape translation:
// they fail with ENOSYS.
func installFilter() error {
	prog := filterProg()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return fmt.Errorf("installing the seccomp filter: %w", errno)
	}
	return nil
}

// filterProg is the seccomp program: RET_TRACE for the traced calls,
// ENOSYS for another architecture's, ALLOW for the rest.
func filterProg() []unix.SockFilter {
	const (
		retAllow = unix.SECCOMP_RET_ALLOW
		retTrace = unix.SECCOMP_RET_TRACE
		retNosys = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	)
	n := len(traced)
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4}, // seccomp_data.arch
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: auditArch, Jt: 1, Jf: 0},
		{Code: unix.BPF_RET | unix.BPF_K, K: retNosys},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, K: 0x40000000, Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: retNosys},
	}
	for i, nr := range traced {
		prog = append(prog, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: nr, Jt: uint8(n - i), Jf: 0})
	}
	return append(prog,
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: retAllow},
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: retTrace},
	)
}
