package sandbox

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStartNetwork connects a fresh network namespace with each program
// KILN_NETWORK_CMD can name (both are installed in CI): the namespace gets
// tap0 with slirp4netns's address plan (default route via 10.0.2.2), the
// program is kiln's child while the network lives and gone after stop.
func TestStartNetwork(t *testing.T) {
	for _, name := range []string{cmdSlirp4netns, cmdPasta} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(NetworkCmdEnv, name)
			got, _, why := networkCmd()
			if why != "" {
				if os.Getenv("CI") != "" {
					t.Fatalf("in CI (.ci/deps installs slirp4netns and passt): %s", why)
				}
				t.Skip(why)
			}
			if got != name {
				t.Fatalf("%s=%s chose %s", NetworkCmdEnv, name, got)
			}
			pid := netnsProcess(t)
			stop, err := startNetwork(context.Background(), pid, false)
			if err != nil {
				t.Fatal(err)
			}
			route, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/net/route")
			if err != nil {
				stop()
				t.Fatal(err)
			}
			comm := []string{name}
			if name == cmdPasta {
				// It runs as passt or passt.avx2, the binary it links to.
				comm = append(comm, "passt")
			}
			kids := childrenNamed(comm...)
			stop()
			if !strings.Contains(string(route), "tap0\t00000000\t0202000A\t") {
				t.Errorf("no default route via 10.0.2.2 on tap0 in the namespace:\n%s", route)
			}
			if len(kids) != 1 {
				t.Fatalf("%d children named %s while the network lives, want 1", len(kids), name)
			}
			deadline := time.Now().Add(5 * time.Second)
			for _, err := os.Stat("/proc/" + kids[0]); err == nil; _, err = os.Stat("/proc/" + kids[0]) {
				if time.Now().After(deadline) {
					t.Fatalf("%s (pid %s) still runs after stop", name, kids[0])
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	t.Run("unknown", func(t *testing.T) {
		t.Setenv(NetworkCmdEnv, "vde")
		if _, _, why := networkCmd(); !strings.Contains(why, `KILN_NETWORK_CMD="vde"`) {
			t.Errorf("an unknown program: %q", why)
		}
	})
}

// netnsProcess starts a process in a network namespace of its own (and a
// user namespace mapping this user to root, when not root), killed when
// the test ends; it skips where no such namespace can be made.
func netnsProcess(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if os.Geteuid() != 0 {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
	}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.ENOSPC) {
			t.Skipf("no network namespace here: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd.Process.Pid
}

// childrenNamed lists the pids of this process's children whose command
// name starts with one of names.
func childrenNamed(names ...string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(stat)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		f := strings.Fields(s[close+1:])
		if len(f) < 2 || f[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		for _, n := range names {
			if strings.HasPrefix(s[open+1:close], n) {
				out = append(out, e.Name())
				break
			}
		}
	}
	return out
}
