package sandbox

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

// dropCaps removes every other capability from the calling thread's
// bounding set, so that the command this thread starts never holds them.
// The caller keeps the thread locked.
func dropCaps() error {
	last := 40
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			last = n
		}
	}
	for c := 0; c <= last; c++ {
		if defaultCaps[c] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
			return err
		}
	}
	return nil
}
