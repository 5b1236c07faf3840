//go:build linux && (amd64 || arm64)

package ptrace

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// catches reports whether process pid has a handler for sig (SigCgt in
// /proc/PID/status): a signal it catches is delivered; one it does not is
// the tracer's to withhold.
func catches(pid int, sig unix.Signal) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err != nil || mask&(1<<(uint(sig)-1)) != 0
		}
	}
	return true
}
