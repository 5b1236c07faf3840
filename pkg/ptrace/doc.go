// Package ptrace runs a command in a root filesystem directory without any
// privilege: no user namespace, no mount, no chroot, no capability. It is
// the isolation of last resort, for the Pod Security Standards
// "restricted" profile (non-root, all capabilities dropped, no_new_privs,
// the runtime's default seccomp profile), where the only thing a process
// may still do is trace its own children.
//
// The tracer, a goroutine of the caller locked to an OS thread of its own
// (it waits only for that thread's tracees), starts a stub that waits
// until it is seized (PTRACE_SEIZE with EXITKILL and fork/vfork/clone/exec
// tracing), then sets no_new_privs, installs a seccomp-bpf filter that
// returns SECCOMP_RET_TRACE for the filesystem and identity system calls
// only, and executes the command. Every other system call runs at full
// speed. The stub is 128 bytes of machine code with the filter, a static
// ELF in a sealed memfd (stubelf_amd64.go, its assembly beside it), so a
// step does not pay for starting a Go runtime; the probe uses kiln itself
// as the stub (stubMain).
//
// At each traced call the tracer
//   - translates path arguments into the root directory: symlinks are
//     resolved inside the root (an absolute target is taken from the root,
//     ".." stops at it), a few guest paths are bound to host paths (/proc,
//     /dev, /sys, the resolver files, RUN --mount files and caches), and the
//     host path is written to a scratch mapping injected once per thread
//     (never below the stack pointer: Go programs run system calls on
//     small goroutine stacks);
//   - translates results back (getcwd, readlink of /proc links,
//     /proc/self/exe of programs started through their ELF interpreter);
//   - runs programs itself: #! lines and PT_INTERP name guest paths the
//     kernel would resolve on the host, so a dynamic program is started as
//     "INTERP --argv0 ARGV0 PROGRAM ARGS";
//   - emulates root: the get*id calls answer the ids the process set, set*id
//     and setgroups succeed and are recorded per process, chown and mknod of
//     devices are recorded in an ownership Table (a device becomes an empty
//     regular placeholder) instead of performed, the stat family answers
//     owners (and device types) from that table, access answers as root, and
//     files the real user may not read or write are opened by making them
//     so for the duration of the call.
//
// The Table is keyed by inode, kept in a file beside the working copy, and
// filled by Apply (layers extracted without chown) and by steps; the
// metadata-walk diff takes owners from it (Table.Fix), so the layer gets
// the owners the step set.
//
// This is a translation layer, not a security boundary: a process can
// always do what the real user may do (the filter is the runtime's, not
// ours). linux/amd64 and linux/arm64 are supported; the arm64 port
// (filter_arm64.go: its call table, and the registers through
// PTRACE_GETREGSET, the call number through NT_ARM_SYSTEM_CALL) is
// cross-compiled and unit-tested, but has not run on arm64 hardware, and
// it has no small stub (kiln itself is the stub there).
package ptrace
