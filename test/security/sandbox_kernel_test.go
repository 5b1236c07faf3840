package security

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/sandbox"
)

var (
	attackOnce sync.Once
	attackBin  string
	attackErr  error
)

// attackBinary is testdata/sandbox-attack built static ($KILN_SANDBOX_ATTACK
// when set: CI builds it for the runs as other users).
func attackBinary(t *testing.T) string {
	t.Helper()
	attackOnce.Do(func() {
		if p := os.Getenv("KILN_SANDBOX_ATTACK"); p != "" {
			attackBin = p
			return
		}
		// Several tests use it: it lives until the test process ends.
		dir, err := os.MkdirTemp("", "kiln-attack-bin-")
		if err != nil {
			attackErr, attackBin = err, ""
			return
		}
		testutil.AtExit(func() { _ = os.RemoveAll(dir) })
		attackBin = filepath.Join(dir, "sandbox-attack")
		cmd := exec.Command("go", "build", "-o", attackBin, "./testdata/sandbox-attack")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			attackErr = err
			attackBin = string(out)
		}
	})
	if attackErr != nil {
		t.Fatalf("building testdata/sandbox-attack: %v\n%s", attackErr, attackBin)
	}
	return attackBin
}

// loopDevice makes a loop device over a file holding secret and returns
// its minor number (root only; -1 elsewhere). It is detached when the test
// ends.
func loopDevice(t *testing.T, secret string) int {
	t.Helper()
	if os.Geteuid() != 0 {
		return -1
	}
	losetup, err := exec.LookPath("losetup")
	if err != nil {
		t.Logf("no losetup: the block device attack runs without a device to read")
		return -1
	}
	f := filepath.Join(t.TempDir(), "disk")
	disk := make([]byte, 1<<20)
	copy(disk, secret)
	if err := os.WriteFile(f, disk, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(losetup, "-f", "--show", f).CombinedOutput()
	if err != nil {
		t.Logf("losetup: %v %s: the block device attack runs without a device to read", err, out)
		return -1
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	dev := lines[len(lines)-1]
	t.Cleanup(func() { _ = exec.Command(losetup, "-d", dev).Run() })
	n, err := strconv.Atoi(strings.TrimPrefix(dev, "/dev/loop"))
	if err != nil {
		t.Fatalf("losetup gave %q", dev)
	}
	return n
}

// TestSandboxKernelAttacks (findings 2, 3, 4 and 6): a RUN step that tries
// what gets a process out of a container or at the host's kernel gets
// nowhere, in every mode: no block or character devices (a loop device the
// test made, holding a secret), no mounts, no host sysctl or sysrq writes,
// no /proc/kcore or /proc/keys, no new user namespaces, no keyrings, BPF,
// perf events or userfaultfd, no ptrace of pid 1, no raw or packet sockets
// on the host's network, no clock setting, no chroot escape (a marker file
// on the host), no descriptor inherited from kiln; no_new_privs and a seccomp
// filter are on, and no capability beyond docker's default set.
func TestSandboxKernelAttacks(t *testing.T) {
	t.Parallel()
	attack := attackBinary(t)
	secret := "KILN-LOOP-SECRET-" + randomHex(8)
	minor := loopDevice(t, secret)
	marker := filepath.Join(t.TempDir(), "host-marker-"+randomHex(4))
	if err := os.WriteFile(marker, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	sysctl := "/proc/sys/fs/lease-break-time"
	before, _ := os.ReadFile(sysctl)
	t.Cleanup(func() {
		if after, _ := os.ReadFile(sysctl); len(before) > 0 && !bytes.Equal(before, after) {
			t.Errorf("fs.lease-break-time changed from %q to %q", before, after)
			_ = os.WriteFile(sysctl, before, 0o644)
		}
	})
	eachSandboxMode(t, func(t *testing.T, sb *sandbox.Sandbox, flags []string) {
		ctx := t.TempDir()
		data, err := os.ReadFile(attack)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ctx, "sandbox-attack"), data, 0o755); err != nil {
			t.Fatal(err)
		}
		df := "FROM " + busyboxRef(t) + "\nCOPY sandbox-attack /kiln-attack\nRUN touch /kiln-attack-step\n" +
			"RUN sh -c 'for fd in $(seq 3 255); do if (: <&$fd) 2>/dev/null; then echo \"inherited-fd $fd: ALLOWED\"; fi; done' > /report; " +
			"KILN_ATTACK_IN_SANDBOX=yes /kiln-attack " + strconv.Itoa(max(minor, 0)) + " " + marker + " >> /report 2>&1; true\n"
		writeFiles(t, ctx, map[string]string{"Dockerfile": df})
		r := kilnRun(t, nil, nil, append(append([]string{}, flags...), "build", "-t", "attack:1", ctx)...)
		if r.err != nil {
			t.Fatalf("%v\n%s", r.err, r)
		}
		report := imageFile(t, storeRoot(flags), lastLine(r.stdout), "report")
		t.Logf("%s mode:\n%s", sb.Mode(), report)
		if strings.Contains(report, secret) {
			t.Errorf("the step read the host's block device")
		}
		if !strings.Contains(report, "chroot-escape: ") || !strings.Contains(report, "info caps: ") {
			t.Fatalf("the attack did not run to its end:\n%s", report)
		}
		for _, l := range strings.Split(report, "\n") {
			if !strings.Contains(l, ": ALLOWED") {
				continue
			}
			if gap := knownGap(sb, l); gap != "" {
				t.Logf("KNOWN GAP in %s mode: %s (%s)", sb.Mode(), l, gap)
				continue
			}
			t.Errorf("%s", l)
		}
		for _, want := range []string{"info no_new_privs: 1", "info seccomp: 2"} {
			if !strings.Contains(report, want) {
				t.Errorf("the report lacks %q", want)
			}
		}
		forbidden := map[int]string{12: "NET_ADMIN", 13: "NET_RAW", 16: "SYS_MODULE", 19: "SYS_PTRACE", 21: "SYS_ADMIN", 17: "SYS_RAWIO", 25: "SYS_TIME", 2: "DAC_READ_SEARCH"}
		if !sb.Features().Mounts {
			forbidden[18] = "SYS_CHROOT"
		}
		for _, l := range strings.Split(report, "\n") {
			if v, ok := strings.CutPrefix(l, "info caps: "); ok {
				caps, err := strconv.ParseUint(v, 16, 64)
				if err != nil {
					t.Fatalf("caps line %q", l)
				}
				for c, name := range forbidden {
					if caps&(1<<c) != 0 {
						t.Errorf("the step holds CAP_%s", name)
					}
				}
			}
		}
	})
}

// knownGap says why an attack that got through is, for now, accepted in a
// mode ("" when it is not).
func knownGap(sb *sandbox.Sandbox, line string) string {
	f := sb.Features()
	switch {
	case f.Ownership == sandbox.OwnersRecorded && strings.HasPrefix(line, "mknod-"):
		// Emulated: the tracer records the node, no device is made (the
		// secret check above proves nothing was read).
		return "device nodes are emulated"
	case !f.Mounts && sb.Mode() != sandbox.ModeChroot && strings.HasPrefix(line, "read /proc/"):
		// ptrace mode has no mount namespace to mask the host's /proc:
		// a step reads what kiln's (non-root) user may read there. It
		// writes nothing there: ptrace mode is refused to root with
		// CAP_SYS_ADMIN (TestSandboxPtraceAsRoot).
		return "no mount namespace to mask /proc; the step reads what kiln's user may"
	}
	return ""
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
