package security

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/pkg/sandbox"
)

// TestSandboxPidsLimit (finding 11): a fork bomb in a RUN step is
// contained by the pids limit (--pids-limit, default 4096: a pids cgroup
// as root, RLIMIT_NPROC in a user namespace): the step's 2,000 background
// processes stop at the limit, the shell cannot fork, the step fails with
// its exit code, and none of the bomb's processes is left on the host.
func TestSandboxPidsLimit(t *testing.T) {
	t.Parallel()
	eachSandboxMode(t, func(t *testing.T, sb *sandbox.Sandbox, flags []string) {
		how, ok := sb.PidsLimitHow()
		if !ok {
			if sb.Mode() == sandbox.ModePtrace {
				t.Skipf("%s (SECURITY.md: ptrace mode has no pids limit)", how)
			}
			t.Fatalf("%s mode has no pids limit: %s", sb.Mode(), how)
		}
		t.Logf("%s mode: %s", sb.Mode(), how)
		tag := fmt.Sprintf("9%d.5", time.Now().UnixNano()%100000)
		r := buildDockerfile(t, append(flags, "--pids-limit", "200"), "bomb:1",
			"FROM {{BASE}}\nRUN i=0; while [ $i -lt 2000 ]; do sleep "+tag+" & i=$((i+1)); done; echo spawned $i\n")
		mustFail(t, r, "can't fork", "exit code")
		if strings.Contains(r.stdout+r.stderr, "spawned 2000") {
			t.Errorf("the bomb spawned all its processes")
		}
		if n := processesWith(t, "sleep "+tag); n > 0 {
			t.Errorf("%d of the bomb's processes are left", n)
		}
		// The limit leaves ordinary steps alone.
		ok1 := buildDockerfile(t, append(flags, "--pids-limit", "200"), "fine:1",
			"FROM {{BASE}}\nRUN for i in 1 2 3 4 5 6 7 8; do sleep 0.1 & done; wait; echo fine\n")
		if ok1.err != nil {
			t.Errorf("a step with 9 processes failed under --pids-limit 200: %v\n%s", ok1.err, ok1)
		}
	})
}

// processesWith counts the host's processes whose command line holds s.
func processesWith(t *testing.T, s string) int {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	n := 0
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err == nil && strings.Contains(strings.ReplaceAll(string(data), "\x00", " "), s) {
			n++
		}
	}
	return n
}
