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
// SIGKILL, in every mode, and so does the program that connects its
// network (slirp4netns; pasta too, forced, after a SIGKILL); and SIGTERM
// ends the build within seconds.
func TestSandboxStepTreeDiesWithKiln(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		sig := sig
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			eachSandboxMode(t, func(t *testing.T, sb *sandbox.Sandbox, flags []string) {
				stepTreeDies(t, sb, flags, sig, 0, nil)
				if _, err := os.Stat("/usr/bin/pasta"); err == nil && sig == syscall.SIGKILL {
					// pasta has no exit descriptor: it dies by its
					// parent-death signal.
					stepTreeDies(t, sb, flags, sig, 1, []string{sandbox.NetworkCmdEnv + "=pasta"})
				}
			})
		})
	}
}

// stepTreeDies runs TestSandboxStepTreeDiesWithKiln's build (variant
// numbers its marker; env is added to kiln's environment) and stops kiln
// with sig: the step's processes and the program that connects its
// network must all go.
func stepTreeDies(t *testing.T, sb *sandbox.Sandbox, flags []string, sig syscall.Signal, variant int, env []string) {
	t.Helper()
	// The marker is unique per signal, mode, variant and test process
	// (the whole pid: the RUN suites of two users may run at once): modes
	// run in parallel, and a marker two of them shared let one count the
	// other's sleeps. As seconds to sleep it stays small: 7SSMV.PID.
	marker := fmt.Sprintf("7%02d%d%d.%d", int(sig), modeIndex(sb.Mode()), variant, os.Getpid())
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM " + busyboxRef(t) + "\n" +
		"RUN setsid sleep " + marker + " & (sleep " + marker + " &) ; sleep " + marker + "\n"})
	cmd := exec.Command(testutil.KilnBinary(t), append(append([]string{}, flags...), "build", ctx)...)
	cmd.Env = append(os.Environ(), env...)
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
		t.Fatalf("%v: %d of 3 sleeps started\n%s", env, n, log)
	}
	nets := networkChildren(cmd.Process.Pid)
	if def, _ := sb.DefaultNetwork(); def == sandbox.NetworkPrivate && len(nets) == 0 {
		t.Errorf("%v: no slirp4netns or pasta child of kiln while the step runs", env)
	}
	stopped := time.Now()
	_ = cmd.Process.Signal(sig)
	_ = cmd.Wait()
	if sig == syscall.SIGTERM && time.Since(stopped) > 15*time.Second {
		t.Errorf("kiln took %s to end after SIGTERM", time.Since(stopped).Round(time.Second))
	}
	deadline = time.Now().Add(15 * time.Second)
	for (sleeps(marker) > 0 || len(alive(nets)) > 0) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := sleeps(marker); n > 0 {
		t.Errorf("%v: %d processes of the step outlived kiln (%s)", env, n, sig)
		killSleeps(marker)
	}
	if left := alive(nets); len(left) > 0 {
		t.Errorf("%v: the step's network program (pids %v) outlived kiln (%s)", env, left, sig)
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// networkChildren lists the children of process parent that connect
// networks (slirp4netns; pasta, which runs as passt or passt.avx2).
func networkChildren(parent int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, ppid, _ := procStat(pid)
		if ppid == parent && (strings.HasPrefix(comm, "slirp4netns") || strings.HasPrefix(comm, "passt") || strings.HasPrefix(comm, "pasta")) {
			out = append(out, pid)
		}
	}
	return out
}

// alive is the pids of pids still running (a zombie waiting for its new
// parent to reap it has ended).
func alive(pids []int) []int {
	var out []int
	for _, pid := range pids {
		if _, _, state := procStat(pid); state != "" && state != "Z" && state != "X" {
			out = append(out, pid)
		}
	}
	return out
}

// procStat is process pid's command name, parent and state ("" when it
// is gone).
func procStat(pid int) (comm string, ppid int, state string) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, ""
	}
	s := string(b)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return "", 0, ""
	}
	f := strings.Fields(s[close+1:])
	if len(f) < 2 {
		return "", 0, ""
	}
	ppid, _ = strconv.Atoi(f[1])
	return s[open+1 : close], ppid, f[0]
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
