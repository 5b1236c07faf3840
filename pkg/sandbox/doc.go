// Package sandbox runs one process in a root filesystem, in the best
// isolation the environment allows, and does the filesystem work that must
// happen where that process's owners are visible.
//
// Modes (see Detect and Choose):
//
//   - userns: kiln re-executes itself (/proc/self/exe, argv[0]
//     "kiln-sandbox-init") into new user, mount, pid, ipc and uts
//     namespaces. The uid/gid maps come from /etc/subuid and /etc/subgid
//     through newuidmap/newgidmap when this user has ranges there; otherwise
//     the caller alone is mapped to root, and files owned by anyone else
//     collapse to root (a one-time warning says so).
//   - root: the same without the user namespace, for real root with
//     CAP_SYS_ADMIN.
//   - chroot: root without CAP_SYS_ADMIN (a default unprivileged
//     container): no namespaces and no mounts; the step runs chrooted in a
//     working copy and its diff is found by a metadata walk.
//   - none: nothing above works; builds without RUN still work and a RUN
//     step fails with what is missing.
//
// Inside userns and root mode the step's root is an overlay of the
// unpacked layers (package rootfs) entered with pivot_root, with a fresh
// /proc (or a bind of the host's where /proc is masked), a minimal /dev, a
// read-only /sys, copies of the host's /etc/hosts and /etc/resolv.conf
// bound in (mount points come from a stub layer, so they never reach the
// step's layer), host networking unless the step asks for none, and the
// step's bind, cache and tmpfs mounts. The helper is the pid namespace's
// init: when it dies, for whatever reason, the kernel kills the whole tree
// and the mount namespace goes with every mount in it.
//
// The helper entry point is taken in this package's init function when
// argv[0] is "kiln-sandbox-init", so any binary that links the package
// (kiln, and test binaries) can serve as the helper; nothing else in the
// program runs in that case.
package sandbox
