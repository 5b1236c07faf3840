package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testutil"
)

// kilnExit runs kiln and returns its stdout, stderr and exit code.
func kilnExit(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	r := kilnRun(t, nil, args...)
	var ee *exec.ExitError
	switch {
	case r.err == nil:
		return r.stdout, r.stderr, 0
	case errors.As(r.err, &ee):
		return r.stdout, r.stderr, ee.ExitCode()
	}
	t.Fatalf("%v\n%s", r.err, r)
	return "", "", 0
}

// TestRunContainer: `kiln run` as a pipeline's smoke test uses it, in the
// sandbox RUN steps use: the image is pulled when missing, stdout and
// stderr are the command's own, its exit code is kiln's, docker run's
// flags do what they do there, and no container is left behind.
func TestRunContainer(t *testing.T) {
	testutil.SkipIfShort(t)
	sb := requireRun(t)
	feat := sb.Features()
	reg := testutil.StartRegistry(t)
	bb := reg + "/library/busybox:latest"
	testutil.PushImage(t, bb, testutil.BusyboxImage(t))
	root := runStore(t)
	k := func(args ...string) (string, string, int) {
		t.Helper()
		return kilnExit(t, append([]string{"--root", root, "run"}, args...)...)
	}

	// Pulled on first use; the pull talks on stderr only.
	out, errOut, code := k(bb, "sh", "-c", "echo out; echo err >&2; exit 3")
	if out != "out\n" || !strings.Contains(errOut, "err\n") || code != 3 {
		t.Fatalf("stdout %q, exit code %d, want out and 3\nstderr:\n%s", out, code, errOut)
	}
	if !strings.Contains(errOut, "Unable to find image") {
		t.Errorf("no pull note on stderr:\n%s", errOut)
	}
	// Killed by a signal: 128+N, as a shell reports it.
	if _, _, code := k(bb, "sh", "-c", "kill -TERM $$"); code != 143 {
		t.Errorf("SIGTERM: exit code %d, want 143", code)
	}
	t.Setenv("KILN_RUN_PASSED", "from-kiln")
	if out, errOut, code := k("-q", "-e", "A=1", "-e", "KILN_RUN_PASSED", "-e", "KILN_RUN_UNSET_VAR", "-w", "/tmp/wd", bb,
		"sh", "-c", `echo "$A $KILN_RUN_PASSED ${KILN_RUN_UNSET_VAR-unset} $(pwd)"`); out != "1 from-kiln unset /tmp/wd\n" || code != 0 || errOut != "" {
		t.Errorf("-e, -w: %q (exit %d), stderr %q", out, code, errOut)
	}
	if out, _, _ := k("--entrypoint", "/bin/echo", bb, "via", "entrypoint"); out != "via entrypoint\n" {
		t.Errorf("--entrypoint: %q", out)
	}
	wantUID := "1000"
	if sb.SingleMapping() {
		wantUID = "0" // only root exists in such a sandbox (a note says so)
	}
	if out, _, _ := k("--user", "1000:1000", bb, "id", "-u"); strings.TrimSpace(out) != wantUID {
		t.Errorf("--user 1000: id -u %q, want %s", out, wantUID)
	}

	// The image's ENTRYPOINT and CMD, as a built image has them.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+bb+"\nENTRYPOINT [\"echo\", \"app\"]\nCMD [\"default\"]\n"), 0o644)
	kiln(t, "--root", root, "build", "-t", "smoke:1", dir)
	if out, _, _ := k("smoke:1"); out != "app default\n" {
		t.Errorf("ENTRYPOINT and CMD: %q", out)
	}
	if out, _, _ := k("smoke:1", "--version"); out != "app --version\n" {
		t.Errorf("CMD replaced: %q", out)
	}

	// Volumes: a writable one's writes reach the host, a read-only one
	// cannot be written.
	host := t.TempDir()
	os.Chmod(host, 0o777)
	os.WriteFile(filepath.Join(host, "in"), []byte("input\n"), 0o644)
	if feat.Mounts {
		if out, errOut, code := k("-v", host+":/data", bb, "sh", "-c", "cat /data/in && echo written > /data/out"); out != "input\n" || code != 0 {
			t.Errorf("-v rw: %q exit %d\n%s", out, code, errOut)
		}
		if b, err := os.ReadFile(filepath.Join(host, "out")); string(b) != "written\n" {
			t.Errorf("-v rw: the host sees %q (%v)", b, err)
		}
	} else if _, errOut, code := k("-v", host+":/data", bb, "true"); code == 0 || !strings.Contains(errOut, "a writable volume needs a mount namespace") {
		t.Errorf("-v rw in %s mode: exit %d\n%s", sb.Mode(), code, errOut)
	}
	if out, _, code := k("-v", host+":/data:ro", bb, "sh", "-c", "cat /data/in; echo x > /data/ro 2>/dev/null"); out != "input\n" || code == 0 {
		t.Errorf("-v ro: %q exit %d (a write must fail)", out, code)
	}
	if _, err := os.Stat(filepath.Join(host, "ro")); err == nil {
		t.Error("-v :ro: the write reached the host")
	}
	if feat.NetworkNamespace {
		if out, _, _ := k("--network", "none", bb, "sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"); strings.TrimSpace(out) != "lo" {
			t.Errorf("--network none: interfaces %q, want lo", out)
		}
	}

	// Nothing is left: no container directory, no process.
	tmps, _ := filepath.Glob(filepath.Join(root, "rootfs", "*", "tmp", "*"))
	if len(tmps) > 0 {
		t.Errorf("left behind: %v", tmps)
	}
	// An interrupted run leaves nothing either.
	ctx, cancel := context.WithCancel(context.Background())
	// A sleep of this test process's own (600.PID seconds), told apart
	// from any other's.
	long := "600." + strconv.Itoa(os.Getpid())
	cmd := exec.CommandContext(ctx, testutil.KilnBinary(t), "--root", root, "run", bb, "sh", "-c", "echo started; sleep "+long)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	pr, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if n, _ := pr.Read(buf); string(buf[:n]) != "started\n" {
		t.Errorf("interrupted run printed %q first", buf[:n])
	}
	cancel()
	if err := cmd.Wait(); err == nil {
		t.Error("an interrupted run exited 0")
	}
	// The step's tree dies with kiln: a moment for the kernel to reap a
	// pid namespace. (pgrep is no Debian package .ci/deps installs: a
	// missing one read as "nothing runs".)
	deadline := time.Now().Add(10 * time.Second)
	for countProcs("sleep\x00"+long+"\x00") > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := countProcs("sleep\x00" + long + "\x00"); n > 0 {
		t.Errorf("the interrupted run's command still runs (%d processes)", n)
	}
	tmps, _ = filepath.Glob(filepath.Join(root, "rootfs", "*", "tmp", "*"))
	if len(tmps) > 0 {
		t.Errorf("an interrupted run left %v", tmps)
	}

	// What docker takes and kiln cannot do is an error naming it.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-v", "named:/data", bb, "true"}, "is not a host path"},
		{[]string{"-v", host + ":/data:z", bb, "true"}, `option "z": kiln takes ro or rw`},
		{[]string{"-v", host + ":data", bb, "true"}, "must be absolute"},
		{[]string{"--network", "bridge", bb, "true"}, "kiln run has host"},
		{[]string{"--rm=false", bb, "true"}, "kiln keeps no containers"},
		{[]string{"--pull", "never", reg + "/library/absent:1", "true"}, "not found in the local store"},
		{[]string{"--pull", "sometimes", bb, "true"}, "want missing, always or never"},
		{[]string{"-d", bb, "true"}, "unknown shorthand flag: 'd'"},
		{[]string{"smoke:1x"}, "smoke:1x"},
	} {
		if _, errOut, code := k(c.args...); code != 1 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, want 1 and an error saying %q:\n%s", c.args, code, c.want, errOut)
		}
	}
}
