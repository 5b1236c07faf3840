package confine

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// defaultCaps are the capabilities docker gives a RUN step (and any
// container by default): CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL,
// SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD,
// AUDIT_WRITE and SETFCAP.
var defaultCaps = map[int]bool{0: true, 1: true, 3: true, 4: true, 5: true, 6: true, 7: true, 8: true, 10: true, 13: true, 18: true, 27: true, 29: true, 31: true}

// DefaultCaps is docker's default capability set as a bit mask.
func DefaultCaps() uint64 {
	var m uint64
	for c := range defaultCaps {
		m |= 1 << uint(c)
	}
	return m
}

// Capabilities DropCaps may be asked to drop beyond the default set.
const (
	CapNetRaw    = 13
	CapSysChroot = 18
)

// DropCaps removes every capability but docker's default set, and the
// ones in also, from the calling thread's bounding and inheritable sets
// and clears its ambient set, so that the command this thread starts never
// holds them (a root step gets its bounding set). The caller keeps the
// thread locked.
func DropCaps(also ...int) error {
	last := 40
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			last = n
		}
	}
	keep := func(c int) bool {
		for _, a := range also {
			if a == c {
				return false
			}
		}
		return defaultCaps[c]
	}
	for c := 0; c <= last; c++ {
		if keep(c) {
			continue
		}
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		if err == unix.EPERM {
			// No CAP_SETPCAP (not root): no capability to hand on either,
			// and no_new_privs keeps setuid programs from gaining any.
			break
		}
		if err != nil && err != unix.EINVAL {
			return err
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return err
	}
	// A runtime may have left capabilities in the inheritable set; for
	// root they would pass to the command whatever the bounding set says.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	for c := 0; c < 64; c++ {
		if !keep(c) {
			data[c/32].Inheritable &^= 1 << (c % 32)
		}
	}
	return unix.Capset(&hdr, &data[0])
}
