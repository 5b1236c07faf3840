package security

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/sandbox"
)

// TestSandboxStepTreeDiesWithKiln (finding 6): a step that leaves
// background processes behind (one in a session of its own, one
// double-forked) loses them all when kiln is stopped, by SIGTERM or by
// SIGKILL, in every mode; and SIGTERM ends the build within seconds.
func TestSandboxStepTreeDiesWithKiln(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		sig := sig
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			eachSandboxMode(t, func(t *testing.T, sb *sandbox.Sandbox, flags []string) {
				// The marker is unique per signal, mode and test process
				// (the whole pid: the RUN suites of two users may run at
				// once): modes run in parallel, and a marker two of them
				// shared let one count the other's sleeps. As seconds to
				// sleep it stays small: 7SSM.PID.
				marker := fmt.Sprintf("7%02d%d.%d", int(sig), modeIndex(sb.Mode()), os.Getpid())
				ctx := t.TempDir()
				writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM " + busyboxRef(t) + "\n" +
					"RUN setsid sleep " + marker + " & (sleep " + marker + " &) ; sleep " + marker + "\n"})
				cmd := exec.Command(testutil.KilnBinary(t), append(append([]string{}, flags...), "build", ctx)...)
				out, err := os.Create(filepath.Join(t.TempDir(), "log"))
				if err != nil {
					t.Fatal(err)
				}
				defer out.Close()
				cmd.Stdout, cmd.Stderr = out, out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				defer func() { _ = cmd.Process.Kill() }()
				deadline := time.Now().Add(2 * time.Minute)
				for sleeps(marker) < 3 && time.Now().Before(deadline) {
					time.Sleep(50 * time.Millisecond)
				}
				if n := sleeps(marker); n < 3 {
					log, _ := os.ReadFile(out.Name())
					t.Fatalf("%d of 3 sleeps started\n%s", n, log)
				}
				stopped := time.Now()
				_ = cmd.Process.Signal(sig)
				_ = cmd.Wait()
				if sig == syscall.SIGTERM && time.Since(stopped) > 15*time.Second {
					t.Errorf("kiln took %s to end after SIGTERM", time.Since(stopped).Round(time.Second))
				}
				deadline = time.Now().Add(15 * time.Second)
				for sleeps(marker) > 0 && time.Now().Before(deadline) {
					time.Sleep(50 * time.Millisecond)
				}
				if n := sleeps(marker); n > 0 {
					t.Errorf("%d processes of the step outlived kiln (%s)", n, sig)
					killSleeps(marker)
				}
			})
		})
	}
}

// modeIndex numbers the isolation modes for markers.
func modeIndex(m sandbox.Mode) int {
	for i, name := range []sandbox.Mode{sandbox.ModeRoot, sandbox.ModeUserns, sandbox.ModeChroot, sandbox.ModePtrace} {
		if m == name {
			return i + 1
		}
	}
	return 9
}

// sleeps counts the processes running "sleep MARKER" (the whole argument:
// a marker may be the start of another's).
func sleeps(marker string) int { return len(sleepPIDs(marker)) }

func sleepPIDs(marker string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), "sleep\x00"+marker+"\x00") {
			if pid, err := strconv.Atoi(e.Name()); err == nil {
				out = append(out, pid)
			}
		}
	}
	return out
}

// killSleeps kills what a failed test left (only its own markers).
func killSleeps(marker string) {
	for _, pid := range sleepPIDs(marker) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
