package security

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/pkg/sandbox"
)

// privilegedRoot reports whether this process is root holding
// CAP_SYS_ADMIN in the initial user namespace.
func privilegedRoot() bool {
	if os.Geteuid() != 0 {
		return false
	}
	status, _ := os.ReadFile("/proc/self/status")
	uidMap, _ := os.ReadFile("/proc/self/uid_map")
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			caps, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return caps&(1<<21) != 0 && strings.Join(strings.Fields(string(uidMap)), " ") == "0 0 4294967295"
		}
	}
	return false
}

// TestSandboxPtraceAsRoot (findings 2 and 11): ptrace mode has no mount
// namespace to mask /proc and runs steps as kiln's own user, so forced as
// root with CAP_SYS_ADMIN in the host's user namespace its steps could
// write host sysctls: kiln refuses it there with an error naming the
// modes to use, and builds nothing; other users keep it.
func TestSandboxPtraceAsRoot(t *testing.T) {
	t.Parallel()
	if _, err := sandbox.ParseMode("ptrace"); err != nil {
		t.Skip("no ptrace mode in this build")
	}
	_, _, err := sandbox.New(context.Background(), sandbox.Options{Mode: sandbox.ModePtrace})
	if !privilegedRoot() {
		if err != nil && strings.Contains(err.Error(), "host sysctls") {
			t.Errorf("ptrace mode refused to a process that is not privileged root: %v", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), "use --isolation root, userns or chroot") {
		t.Errorf("sandbox.New(ptrace) as privileged root: %v, want a refusal naming the modes to use", err)
	}
	r := buildDockerfile(t, []string{"--root", t.TempDir(), "--isolation", "ptrace"}, "ptrace:1",
		"FROM {{BASE}}\nRUN echo 1 > /proc/sys/fs/lease-break-time; true\n")
	mustFail(t, r, "--isolation ptrace", "host sysctls", "use --isolation root, userns or chroot")
}
