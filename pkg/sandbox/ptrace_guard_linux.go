package sandbox

import (
	"errors"
	"os"
	"strings"
)

// errPtraceAsRoot refuses ptrace mode to root with CAP_SYS_ADMIN in the
// initial user namespace: ptrace mode has no mount namespace to mask the
// host's /proc and runs the step as kiln's own user, so such a step could
// write host sysctls (/proc/sys, kernel.core_pattern among them) and the
// other files root may write in /proc and /sys. That root has root,
// userns and chroot mode, which mask them.
var errPtraceAsRoot = errors.New("ptrace mode runs RUN steps as kiln's own user on the host's /proc and /sys, which root with CAP_SYS_ADMIN in the host's user namespace may write (host sysctls): use --isolation root, userns or chroot")

// ptraceRefused is errPtraceAsRoot where it applies, else nil.
func ptraceRefused(env *Env) error {
	if os.Geteuid() != 0 || !env.HasCap(capSysAdmin) || !initialUserNS() {
		return nil
	}
	return errPtraceAsRoot
}

// initialUserNS reports whether this process is in the initial user
// namespace (its uid map is the identity over every id).
func initialUserNS() bool {
	data, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(data))
	return len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295"
}
