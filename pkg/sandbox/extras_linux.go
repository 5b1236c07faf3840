package sandbox

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// setUlimits sets the helper's limits, which the command it starts
// inherits (--ulimit). A hard limit above the helper's own needs
// CAP_SYS_RESOURCE: the error says so.
func setUlimits(us []Ulimit) error {
	for _, u := range us {
		lim := unix.Rlimit{Cur: rlim(u.Soft), Max: rlim(u.Hard)}
		if err := unix.Setrlimit(u.Resource, &lim); err != nil {
			var cur unix.Rlimit
			_ = unix.Getrlimit(u.Resource, &cur)
			return fmt.Errorf("--ulimit %s=%s:%s: %w (the hard limit here is %s; raising it needs CAP_SYS_RESOURCE)", u.Name, limStr(u.Soft), limStr(u.Hard), err, limStr(int64(cur.Max)))
		}
	}
	return nil
}

func rlim(n int64) uint64 {
	if n < 0 {
		return unix.RLIM_INFINITY
	}
	return uint64(n)
}

func limStr(n int64) string {
	if n < 0 || uint64(n) == unix.RLIM_INFINITY {
		return "unlimited"
	}
	return fmt.Sprint(n)
}
