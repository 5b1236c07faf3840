package sandbox

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPidsCgroupV2 runs the cgroup v2 side of the pids limit on a cgroup2
// hierarchy the test mounts in a mount namespace of its own (as root; the
// v1 side is what test/security's TestSandboxPidsLimit runs on a v1 host).
// Where the unified hierarchy has the pids controller, a shell in a step
// cgroup with pids.max 4 cannot start 10 background processes; where pids
// is bound to a v1 hierarchy instead (a hybrid host: no cgroup2 mount,
// private or not, can have it), the refusal must say so, and the test
// skips naming the controllers it found.
func TestPidsCgroupV2(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a cgroup2 hierarchy needs root")
	}
	mnt := t.TempDir()
	type outcome struct {
		controllers, why, shell string
		current                 []byte
		err                     error
		skip                    string
	}
	res := make(chan outcome, 1)
	go func() {
		// The mount namespace is this thread's only: it stays locked
		// and ends with the goroutine.
		runtime.LockOSThread()
		var o outcome
		defer func() { res <- o }()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			o.skip = "no mount namespace: " + err.Error()
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			o.err = err
			return
		}
		if err := unix.Mount("cgroup2", mnt, "cgroup2", 0, ""); err != nil {
			o.skip = "cannot mount cgroup2: " + err.Error()
			return
		}
		defer func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) }()
		data, _ := os.ReadFile(filepath.Join(mnt, "cgroup.controllers"))
		o.controllers = strings.TrimSpace(string(data))
		var base string
		base, o.why = findPidsBase(mnt)
		if base == "" {
			return
		}
		o.shell, o.current, o.err = forkInCgroup(base, 4, 10)
	}()
	o := <-res
	switch {
	case o.skip != "":
		t.Skip(o.skip)
	case o.err != nil:
		t.Fatal(o.err)
	case !strings.Contains(" "+o.controllers+" ", " pids "):
		if o.why != "cgroup v2 without the pids controller" {
			t.Fatalf("controllers %q: the refusal says %q", o.controllers, o.why)
		}
		cg, _ := os.ReadFile("/proc/cgroups")
		t.Skipf("the cgroup2 hierarchy has controllers %q, no pids (bound to a v1 hierarchy: %s): the refusal is checked, the limit cannot be", o.controllers, pidsLine(cg))
	case o.why != "":
		t.Fatalf("controllers %q: %s", o.controllers, o.why)
	}
	checkForks(t, o.shell, o.current)
}

// TestPidsCgroupV1 is TestPidsCgroupV2's limit on a v1 pids hierarchy at
// /sys/fs/cgroup/pids, where there is one (as root).
func TestPidsCgroupV1(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a pids cgroup needs root")
	}
	if _, err := os.Stat("/sys/fs/cgroup/pids/cgroup.procs"); err != nil {
		t.Skip("no v1 pids hierarchy here")
	}
	base, why := findPidsBase("/sys/fs/cgroup")
	if base == "" {
		t.Fatal(why)
	}
	shell, current, err := forkInCgroup(base, 4, 10)
	if err != nil {
		t.Fatal(err)
	}
	checkForks(t, shell, current)
}

// checkForks checks that a shell under pids.max 4 stopped at 4 processes
// (itself and 3 sleeps): its 4th fork failed.
func checkForks(t *testing.T, shell string, current []byte) {
	t.Helper()
	t.Logf("pids.current %s; the shell said: %s", bytes.TrimSpace(current), strings.TrimSpace(shell))
	cur, err := strconv.Atoi(string(bytes.TrimSpace(current)))
	if err != nil || cur > 4 || strings.Contains(shell, "all started") {
		t.Errorf("10 background sleeps under pids.max 4: pids.current %q, the shell said:\n%s", current, shell)
	}
}

// pidsLine is /proc/cgroups' line of the pids controller.
func pidsLine(cgroups []byte) string {
	for _, l := range strings.Split(string(cgroups), "\n") {
		if strings.HasPrefix(l, "pids\t") {
			return strings.Join(strings.Fields(l), " ")
		}
	}
	return "no pids line in /proc/cgroups"
}

// forkInCgroup starts a shell, moves it into a step cgroup of base with
// pids.max limit, and has it start n background sleeps; it returns the
// shell's output and the cgroup's pids.current once it gave up or
// started them all (its processes are then killed).
func forkInCgroup(base string, limit int64, n int) (string, []byte, error) {
	script := "read dir; for i in " + strings.Repeat("x ", n) + "; do sleep 30 >/dev/null 2>&1 & done; echo all started"
	cmd := exec.Command("/bin/sh", "-c", script)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	cg, err := joinPidsCgroup(base, cmd.Process.Pid, limit)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return "", nil, err
	}
	defer cg.remove()
	_, _ = stdin.Write([]byte(cg.dir + "\n"))
	stdin.Close()
	_ = cmd.Wait()
	current, _ := os.ReadFile(filepath.Join(cg.dir, "pids.current"))
	procs, _ := os.ReadFile(filepath.Join(cg.dir, "cgroup.procs"))
	for _, f := range strings.Fields(string(procs)) {
		if pid, err := strconv.Atoi(f); err == nil {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
	return out.String(), current, nil
}
