// Package sandbox runs one process in a root filesystem, in the best
// isolation the environment allows, and does the filesystem work that must
// happen where that process's owners are visible.
//
// Each isolation mode is one implementation of Impl, declaring what it
// can do in Features (overlay, mounts, pid and network namespaces, how
// owners are kept); the build asks the Features, never the mode's name.
// The built-in modes register themselves as Candidates (root, userns,
// chroot, in that order of preference); a mode in another package calls
// Register from its init function, and New tries every registered mode in
// Order (ptrace, registered from ptrace_linux.go, is the last resort at 900).
// ParseMode reads --isolation from the registered modes, so a new mode is
// one file: its Impl and its Register call. The behaviour tests run against
// every mode that works here.
//
// Modes:
//
//   - userns: kiln re-executes itself (/proc/self/exe, argv[0]
//     "kiln-sandbox-init") into new user, mount, pid, ipc and uts
//     namespaces. The uid/gid maps come from /etc/subuid and /etc/subgid
//     through newuidmap/newgidmap when this user has ranges there; otherwise
//     the caller alone is mapped to root, and files owned by anyone else
//     collapse to root (a one-time warning says so).
//     Root, too, gets a user namespace where root mode does not work (no
//     CAP_SYS_ADMIN), with every id mapped to itself.
//   - root: the same without the user namespace, for real root with
//     CAP_SYS_ADMIN.
//   - chroot: root where neither works (a default unprivileged container:
//     no CAP_SYS_ADMIN, and its seccomp profile refuses new user
//     namespaces): no namespaces and no mounts; the step runs chrooted in
//     a working copy and its diff is found by a metadata walk. The helper
//     is a child subreaper and kills whatever the step leaves running.
//   - ptrace (ptrace_linux.go, on package ptrace): the last resort, for a
//     non-root user without user namespaces, capabilities or privilege
//     escalation (Pod Security Standards "restricted"): the step's
//     processes are traced in a working copy, root is emulated and the
//     owners it sets are recorded in an ownership table that Apply fills
//     and WalkDiff reads; RUN --mount files, caches, tmpfs and read-only
//     binds are guest paths served from host paths.
//   - none: nothing above works; builds without RUN still work and a RUN
//     step fails with what is missing.
//
// Inside userns and root mode the step's root is an overlay of the
// unpacked layers (package rootfs) entered with pivot_root, with a fresh
// /proc (or a bind of the host's where /proc is masked), a minimal /dev, a
// read-only /sys, copies of the host's /etc/hosts and /etc/resolv.conf
// bound in (mount points come from a stub layer, so they never reach the
// step's layer), a network namespace of the step's own (network_linux.go:
// slirp4netns, or pasta where it is missing (pasta_linux.go,
// KILN_NETWORK_CMD), gives it outbound access; loopback only with
// --network none; the host's with --network host or where neither can
// run), and
// the step's bind, cache and tmpfs mounts. The helper is the pid namespace's
// init: when it dies, for whatever reason, the kernel kills the whole tree
// and the mount namespace goes with every mount in it.
//
// Every step's processes are bounded by the pids limit (limits_linux.go:
// a pids cgroup per step as root, RLIMIT_NPROC in a user namespace), and
// what it writes by the disk quota (quota.go, quota_linux.go: --disk-limit
// and --disk-reserve, a watcher of the step's writable tree that kills the
// step's tree and makes Run return a DiskError; RLIMIT_FSIZE for single
// files), in every mode.
// VerifyUnpacked compares an unpacked layer directory with its layer's tar
// (kiln prune --verify), inside the helper where the owners are visible.
//
// A step's Extras (extras.go) are docker build's --add-host lines in its
// /etc/hosts copy (every mode; NAME:host-gateway is the address at which
// the step reaches the host's services: 127.0.0.1 on the host's network,
// 10.0.2.2 on a private one, whose slirp4netns then forwards to the host's
// loopback, and no line without a network), --ulimit limits set by the helper before
// it starts the command (not in ptrace mode) and --shm-size for its
// /dev/shm tmpfs (modes with a mount namespace); a mode that cannot give
// one fails the step saying so.
//
// Every step, in every mode, gets package confine's capability drop and
// seccomp filter (with no_new_privs), only stdin, stdout and stderr, and,
// with a mount namespace, runc's masked and read-only /proc and /sys paths
// (SECURITY.md says what each mode protects and what not). In chroot mode,
// RUN --mount cache, context bind and tmpfs directories are renamed into
// the step's root and back out (see chrootMove), and an ssh agent's
// socket is a socket kiln listens on at the target, relaying each
// connection to the agent (socketRelay).
//
// The helper entry point is taken in this package's init function when
// argv[0] is "kiln-sandbox-init", so any binary that links the package
// (kiln, and test binaries) can serve as the helper; nothing else in the
// program runs in that case.
package sandbox
