package sandbox

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ignoreChown installs, for the helper and every process it starts, a
// seccomp filter under which the chown family of system calls succeeds
// without doing anything. With only the caller mapped in the user
// namespace, chown to any other id fails with EINVAL and package managers
// give up; with the filter, files simply stay root's, which is what the
// single-id mapping can store anyway.
func ignoreChown() error {
	if len(chownSyscalls) == 0 {
		return fmt.Errorf("no chown filter for this architecture")
	}
	// BPF: if arch != native -> allow; if nr in chownSyscalls -> errno 0;
	// else allow.
	const (
		retAllow = unix.SECCOMP_RET_ALLOW
		retNoop  = unix.SECCOMP_RET_ERRNO // errno 0: the call "succeeds"
	)
	n := len(chownSyscalls)
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4}, // seccomp_data.arch
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: auditArch, Jt: 1, Jf: 0},
		{Code: unix.BPF_RET | unix.BPF_K, K: retAllow},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
	}
	for i, nr := range chownSyscalls {
		// Jump to the no-op return (after the remaining compares and the
		// allow) when equal.
		prog = append(prog, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: uint32(nr), Jt: uint8(n - i), Jf: 0})
	}
	prog = append(prog,
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: retAllow},
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: retNoop},
	)
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return fmt.Errorf("seccomp: %w", errno)
	}
	return nil
}
