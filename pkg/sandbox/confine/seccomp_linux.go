//go:build linux

package confine

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// deniedSyscalls fail with EPERM in every step, as under Docker's default
// seccomp profile: mounting, kernel keyrings, BPF, kernel modules, kexec,
// the clocks, swap, reboot, accounting, quotas, file handles, perf events,
// userfaultfd, the kernel log, joining namespaces.
var deniedSyscalls = []int{
	unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT,
	unix.SYS_FSOPEN, unix.SYS_FSCONFIG, unix.SYS_FSMOUNT, unix.SYS_FSPICK,
	unix.SYS_OPEN_TREE, unix.SYS_MOVE_MOUNT, unix.SYS_MOUNT_SETATTR,
	unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY,
	unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN, unix.SYS_USERFAULTFD,
	unix.SYS_KEXEC_LOAD, unix.SYS_KEXEC_FILE_LOAD,
	unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE, unix.SYS_DELETE_MODULE,
	unix.SYS_CLOCK_SETTIME, unix.SYS_CLOCK_ADJTIME, unix.SYS_ADJTIMEX, unix.SYS_SETTIMEOFDAY,
	unix.SYS_SWAPON, unix.SYS_SWAPOFF, unix.SYS_REBOOT, unix.SYS_ACCT,
	unix.SYS_QUOTACTL, unix.SYS_QUOTACTL_FD, unix.SYS_OPEN_BY_HANDLE_AT, unix.SYS_LOOKUP_DCOOKIE,
	unix.SYS_SYSLOG, unix.SYS_VHANGUP, unix.SYS_SETNS, unix.SYS_NFSSERVCTL,
}

// Filter is the seccomp filter of a step: deniedSyscalls, new user
// namespaces (unshare, clone; clone3 gets ENOSYS so that the C library
// falls back to clone), block and character devices other than 0:0, and
// what its fields add.
type Filter struct {
	// NoPtrace refuses ptrace (no pid namespace: the host's processes
	// are in reach).
	NoPtrace bool
	// NoChroot refuses chroot (chroot mode: a second chroot is the way
	// out of the first).
	NoChroot bool
	// AllowDevices leaves mknod alone (a mode that emulates device nodes
	// and never makes real ones).
	AllowDevices bool
}

// bpf is a small assembler for classic BPF with forward jumps to labels.
type bpf struct {
	prog   []unix.SockFilter
	fixups []bpfFixup
	labels map[string]int
}

type bpfFixup struct {
	at     int
	jt, jf string
}

func (b *bpf) op(code uint16, k uint32) { b.prog = append(b.prog, unix.SockFilter{Code: code, K: k}) }
func (b *bpf) load(off uint32)          { b.op(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, off) }
func (b *bpf) ret(k uint32)             { b.op(unix.BPF_RET|unix.BPF_K, k) }
func (b *bpf) label(name string)        { b.labels[name] = len(b.prog) }

// jump adds a conditional jump (code: BPF_JEQ, BPF_JSET, ...) to labels
// jt and jf ("" is the next instruction).
func (b *bpf) jump(code uint16, k uint32, jt, jf string) {
	b.fixups = append(b.fixups, bpfFixup{at: len(b.prog), jt: jt, jf: jf})
	b.op(unix.BPF_JMP|code|unix.BPF_K, k)
}

func (b *bpf) resolve() error {
	for _, f := range b.fixups {
		for _, l := range []struct {
			name string
			dst  *uint8
		}{{f.jt, &b.prog[f.at].Jt}, {f.jf, &b.prog[f.at].Jf}} {
			if l.name == "" {
				continue
			}
			to, ok := b.labels[l.name]
			if !ok || to <= f.at || to-f.at-1 > 255 {
				return fmt.Errorf("seccomp filter: bad jump to %s", l.name)
			}
			*l.dst = uint8(to - f.at - 1)
		}
	}
	return nil
}

// argLow is the offset of the low 32 bits of system call argument i in
// struct seccomp_data (little endian).
func argLow(i int) uint32 { return uint32(16 + 8*i) }

const (
	retAllow = unix.SECCOMP_RET_ALLOW
	retEPERM = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	// clone3 passes its flags in memory the filter cannot read: ENOSYS
	// makes the C library fall back to clone, whose flags it can.
	retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
)

// program builds the filter.
func (f Filter) program() ([]unix.SockFilter, error) {
	if auditArch == 0 {
		return nil, fmt.Errorf("no step filter for this architecture")
	}
	b := &bpf{labels: map[string]int{}}
	// Another architecture's calls (i386 on amd64) have other numbers:
	// refuse them all.
	b.load(4)
	b.jump(unix.BPF_JEQ, auditArch, "native", "")
	b.ret(retEPERM)
	b.label("native")
	b.load(0)
	if x32ABI != 0 {
		b.jump(unix.BPF_JGE, x32ABI, "deny", "")
	}
	denied := append(append([]int{}, deniedSyscalls...), archDenied...)
	if f.NoPtrace {
		denied = append(denied, unix.SYS_PTRACE)
	}
	if f.NoChroot {
		denied = append(denied, unix.SYS_CHROOT)
	}
	for _, nr := range denied {
		b.jump(unix.BPF_JEQ, uint32(nr), "deny", "")
	}
	b.jump(unix.BPF_JEQ, unix.SYS_CLONE3, "enosys", "")
	// unshare and clone: no new user namespace (arg 0 holds the flags on
	// both architectures).
	b.jump(unix.BPF_JEQ, unix.SYS_UNSHARE, "flags", "")
	b.jump(unix.BPF_JEQ, unix.SYS_CLONE, "flags", "")
	mknods := mknodSyscalls
	if f.AllowDevices {
		mknods = nil
	}
	for i, m := range mknods {
		b.jump(unix.BPF_JEQ, uint32(m[0]), fmt.Sprintf("mknod%d", i), "")
	}
	b.ret(retAllow)

	b.label("flags")
	b.load(argLow(0))
	b.jump(unix.BPF_JSET, unix.CLONE_NEWUSER, "deny", "allow")
	// mknod: fifos, sockets and regular files, and the 0:0 character
	// device (an overlay whiteout); no other device.
	for i, m := range mknods {
		b.label(fmt.Sprintf("mknod%d", i))
		b.load(argLow(m[1]))
		b.op(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, unix.S_IFMT)
		b.jump(unix.BPF_JEQ, unix.S_IFBLK, "deny", "")
		b.jump(unix.BPF_JEQ, unix.S_IFCHR, "", "allow")
		b.load(argLow(m[1] + 1))
		b.jump(unix.BPF_JEQ, 0, "allow", "deny")
	}
	b.label("allow")
	b.ret(retAllow)
	b.label("enosys")
	b.ret(retENOSYS)
	b.label("deny")
	b.ret(retEPERM)
	if err := b.resolve(); err != nil {
		return nil, err
	}
	return b.prog, nil
}

// Program is the filter's BPF program (for a stub that installs it
// itself, as ptrace mode's does).
func (f Filter) Program() ([]unix.SockFilter, error) { return f.program() }

// Install sets no_new_privs and installs the filter on every thread of
// the calling process: the step's command inherits both.
func (f Filter) Install() error {
	prog, err := f.program()
	if err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return fmt.Errorf("seccomp: %w", errno)
	}
	return nil
}
