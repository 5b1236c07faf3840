package sandbox_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/rootfs"
	"github.com/kiln-build/kiln/pkg/sandbox"
)

// newSandbox detects this environment's mode; tests that need RUN skip
// where none works (they run as root, as a user with subordinate ids and as
// one without, in CI).
func newSandbox(t *testing.T) *sandbox.Sandbox {
	t.Helper()
	sb, rep, err := sandbox.New(context.Background(), sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if sb.Mode() == sandbox.ModeNone {
		t.Skipf("no isolation works here: %s (%+v)", sb.Reason(), rep.Checks)
	}
	t.Logf("%s", sb.Summary())
	return sb
}

// eachMode runs f in a subtest for every isolation mode that works here
// (the shared behaviour suite: every mode must pass it).
func eachMode(t *testing.T, f func(t *testing.T, fx *fixture)) {
	t.Helper()
	n := 0
	for _, m := range sandbox.Modes() {
		if m == sandbox.ModeNone {
			continue
		}
		sb, _, err := sandbox.New(context.Background(), sandbox.Options{Mode: m})
		if err != nil {
			t.Logf("mode %s: %v", m, err)
			continue
		}
		n++
		t.Run(string(m), func(t *testing.T) {
			t.Logf("%s", sb.Summary())
			f(t, newFixture(t, sb))
		})
	}
	if n == 0 {
		t.Skip("no isolation works here")
	}
}

// fixture is the busybox test image prepared for one mode: unpacked
// layers (overlay modes) or a fresh working copy per step.
type fixture struct {
	sb     *sandbox.Sandbox
	st     *rootfs.Store
	layers []rootfs.Layer
	lowers []string
}

func newFixture(t *testing.T, sb *sandbox.Sandbox) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := rootfs.Open(filepath.Join(dir, "rootfs"))
	if err != nil {
		t.Fatal(err)
	}
	// Files of other owners (in a user namespace) are removed from inside.
	t.Cleanup(func() {
		if err := sb.Remove(context.Background(), st.Root()); err != nil {
			t.Errorf("removing the store: %v", err)
		}
	})
	img := testutil.BusyboxImage(t)
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{sb: sb, st: st}
	for _, l := range ls {
		d, err := l.DiffID()
		if err != nil {
			t.Fatal(err)
		}
		fx.layers = append(fx.layers, rootfs.Layer{DiffID: d, Open: l.Uncompressed, Name: d.String()[:19]})
	}
	if sb.Overlay() {
		if fx.lowers, err = st.Prepare(context.Background(), sb, fx.layers, nil); err != nil {
			t.Fatal(err)
		}
	}
	return fx
}

// prepare fills in the step's root: the unpacked layers with a fresh
// temp directory, or a fresh working copy.
func (fx *fixture) prepare(t *testing.T, step *sandbox.Step) {
	t.Helper()
	tmp, err := fx.st.TempDir(fx.sb.Key(), "test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fx.sb.Remove(context.Background(), tmp) })
	step.TempDir = filepath.Join(tmp, "t")
	if err := os.Mkdir(step.TempDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if fx.sb.Overlay() {
		step.Lowers = fx.lowers
		return
	}
	step.Dir = filepath.Join(tmp, "rootfs")
	for _, l := range fx.layers {
		rc, err := l.Open()
		if err != nil {
			t.Fatal(err)
		}
		_, err = fx.sb.Apply(context.Background(), step.Dir, rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// run runs script with /bin/sh -c in busybox and returns its output.
func (fx *fixture) run(t *testing.T, step sandbox.Step, script string) (string, *sandbox.StepResult) {
	t.Helper()
	fx.prepare(t, &step)
	var out bytes.Buffer
	step.Args = []string{"/bin/sh", "-c", script}
	if step.Env == nil {
		step.Env = []string{"PATH=/bin:/usr/bin"}
	}
	step.Stdout, step.Stderr = &out, &out
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := fx.sb.Run(ctx, step)
	if err != nil {
		t.Fatalf("run %q: %v\n%s", script, err, out.String())
	}
	return out.String(), res
}

// busyboxLowers unpacks the busybox test image into a fresh rootfs store
// and returns the store and its layer directories (overlay modes only).
func busyboxLowers(t *testing.T, sb *sandbox.Sandbox) (*rootfs.Store, []string) {
	t.Helper()
	if !sb.Overlay() {
		t.Skip("no overlay here: the working copy path is tested through pkg/build")
	}
	fx := newFixture(t, sb)
	return fx.st, fx.lowers
}

func TestDetectReportsAMode(t *testing.T) {
	// Detection leaves nothing in TMPDIR.
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	defer func() {
		if left, _ := os.ReadDir(tmp); len(left) > 0 {
			t.Errorf("detection left %d entries in TMPDIR (%s)", len(left), left[0].Name())
		}
	}()
	sb, rep, err := sandbox.New(context.Background(), sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Mode != sb.Mode() || rep.Reason == "" || len(rep.Checks) == 0 {
		t.Fatalf("report %+v for mode %s", rep, sb.Mode())
	}
	switch {
	case os.Geteuid() == 0 && sb.Mode() != sandbox.ModeRoot && sb.Mode() != sandbox.ModeChroot:
		t.Errorf("root got mode %s", sb.Mode())
	case os.Geteuid() != 0 && sb.Mode() != sandbox.ModeUserns && sb.Mode() != sandbox.ModeNone:
		t.Errorf("a non-root user got mode %s", sb.Mode())
	}
	for _, c := range rep.Checks {
		if !c.OK && c.Fix == "" && c.Name != "CAP_SYS_ADMIN" {
			t.Errorf("check %s fails without a fix: %s", c.Name, c.Detail)
		}
	}
	// A forced mode that cannot work is an error, not a fallback.
	if os.Geteuid() != 0 {
		if _, _, err := sandbox.New(context.Background(), sandbox.Options{Mode: sandbox.ModeRoot}); err == nil {
			t.Error("--isolation root as a non-root user was accepted")
		}
	}
	if _, err := sandbox.ParseMode("bogus"); err == nil {
		t.Error("ParseMode accepted bogus")
	}
}

func TestSubIDRanges(t *testing.T) {
	f := filepath.Join(t.TempDir(), "subuid")
	os.WriteFile(f, []byte("# comment\nalice:100000:65536\nbob:200000:1000\n1234:300000:10\nalice:400000:5\nbad:line\n"), 0o644)
	got, err := sandbox.SubIDRanges(f, "alice", 999)
	if err != nil || len(got) != 2 || got[0] != (sandbox.Range{Start: 100000, Count: 65536}) || got[1].Start != 400000 {
		t.Errorf("alice: %v %v", got, err)
	}
	if got, _ := sandbox.SubIDRanges(f, "nobody-here", 1234); len(got) != 1 || got[0].Start != 300000 {
		t.Errorf("by uid: %v", got)
	}
	if got, _ := sandbox.SubIDRanges(f, "carol", 1); len(got) != 0 {
		t.Errorf("carol: %v", got)
	}
}

func TestRunIsolation(t *testing.T) {
	eachMode(t, func(t *testing.T, fx *fixture) {
		f := fx.sb.Features()
		out, res := fx.run(t, sandbox.Step{}, `
set -e
echo "init=$(cat /proc/1/cmdline | tr '\0' ' ')"
echo "pids=$(ls /proc | grep -c '^[0-9]')"
echo dev > /dev/null && echo "null=ok"
head -c 4 /dev/zero | od -An -tx1 | tr -d ' \n'; echo
if touch /sys/kiln-test 2>/dev/null; then echo sys=rw; else echo sys=ro; fi
echo "hosts=$(md5sum /etc/hosts | cut -c1-32)"
echo "root=$(ls / | tr '\n' ' ')"
exit 3`)
		if res.ExitCode != 3 {
			t.Errorf("exit code %d, want 3\n%s", res.ExitCode, out)
		}
		hostHosts, err := os.ReadFile("/etc/hosts")
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"null=ok", "00000000", fmt.Sprintf("hosts=%x", md5.Sum(hostHosts))}
		if f.Mounts {
			want = append(want, "sys=ro")
		}
		if f.PIDNamespace {
			want = append(want, "init=kiln-sandbox-init")
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
		for _, l := range strings.Split(out, "\n") {
			// A pid namespace of its own: a handful of processes, not the host's.
			if n, ok := strings.CutPrefix(l, "pids="); ok && f.PIDNamespace {
				if c, _ := strconv.Atoi(n); c == 0 || c > 10 {
					t.Errorf("%d processes visible in the sandbox", c)
				}
			}
			if r, ok := strings.CutPrefix(l, "root="); ok && (strings.Contains(r, "kiln-sandbox") || !strings.Contains(r, "bin")) {
				t.Errorf("root directory is %q", r)
			}
		}
	})
}

func TestRunUserAndEnv(t *testing.T) {
	eachMode(t, func(t *testing.T, fx *fixture) {
		cases := []struct{ user, want string }{
			{"", "uid=0(root) gid=0(root)"},
			{"app", "uid=1000(app) gid=1000(app)"},
			{"1000", "uid=1000(app) gid=1000(app)"},
			{"4242", "uid=4242 gid=0(root)"},
			{"app:staff", "uid=1000(app) gid=50(staff)"},
			{"nobody:123", "uid=65534(nobody) gid=123"},
		}
		for _, c := range cases {
			out, res := fx.run(t, sandbox.Step{User: c.user, Env: []string{"PATH=/bin", "GREETING=hi there"}, Cwd: "/var/tmp/new"}, `id; pwd; echo "$GREETING|$HOME"`)
			if res.ExitCode != 0 {
				t.Fatalf("user %q: exit %d\n%s", c.user, res.ExitCode, out)
			}
			want := c.want
			if fx.sb.SingleMapping() && c.user != "" {
				want = "uid=0(root) gid=0(root)" // only root exists
				if len(res.Notes) == 0 {
					t.Errorf("user %q ran as root without a note", c.user)
				}
			}
			if !strings.HasPrefix(out, want) || !strings.Contains(out, "/var/tmp/new\nhi there|") {
				t.Errorf("user %q: got\n%s\nwant %q, cwd /var/tmp/new and the env", c.user, out, want)
			}
		}
		// An unknown user name is an error that names it.
		step := sandbox.Step{Args: []string{"true"}, User: "ghost"}
		fx.prepare(t, &step)
		_, err := fx.sb.Run(context.Background(), step)
		if err == nil || !strings.Contains(err.Error(), "ghost") {
			t.Errorf("USER ghost: %v", err)
		}
	})
}

func TestRunNetworkNone(t *testing.T) {
	eachMode(t, func(t *testing.T, fx *fixture) {
		if !fx.sb.Features().NetworkNamespace {
			step := sandbox.Step{Network: "none", Args: []string{"true"}}
			fx.prepare(t, &step)
			if _, err := fx.sb.Run(context.Background(), step); err == nil || !strings.Contains(err.Error(), "network namespace") {
				t.Errorf("--network=none without a network namespace: %v", err)
			}
			return
		}
		out, _ := fx.run(t, sandbox.Step{Network: "none"}, `cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '`)
		if strings.TrimSpace(out) != "lo" {
			t.Errorf("--network=none sees interfaces %q, want only lo", out)
		}
		out, _ = fx.run(t, sandbox.Step{}, `cat /proc/net/dev | tail -n +3 | wc -l`)
		if n, _ := strconv.Atoi(strings.TrimSpace(out)); n < 1 {
			t.Errorf("host network shows %q interfaces", out)
		}
	})
}

// TestRunChangesLandInUpper: the step's writes, deletions and mount
// points: only the first two reach the upper directory.
func TestRunChangesLandInUpper(t *testing.T) {
	sb := newSandbox(t)
	st, lowers := busyboxLowers(t, sb)
	tmp, err := st.TempDir(sb.Key(), "test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Remove(context.Background(), tmp) })
	ctxDir := t.TempDir()
	os.WriteFile(filepath.Join(ctxDir, "in.txt"), []byte("from the context"), 0o644)
	var out bytes.Buffer
	res, err := sb.Run(context.Background(), sandbox.Step{
		Lowers: lowers, TempDir: tmp, Env: []string{"PATH=/bin"},
		Args:   []string{"/bin/sh", "-c", "cat /src/in.txt && echo new > /created && rm /etc/group && echo changed >> /src/in.txt && echo x > /scratch/y"},
		Mounts: []sandbox.Mount{{Type: "bind", Target: "/src", Source: ctxDir}, {Type: "tmpfs", Target: "/scratch"}},
		Stdout: &out, Stderr: &out,
	})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("%v %+v\n%s", err, res, out.String())
	}
	if !strings.Contains(out.String(), "from the context") {
		t.Errorf("bind mount not visible: %s", out.String())
	}
	if b, _ := os.ReadFile(filepath.Join(ctxDir, "in.txt")); string(b) != "from the context" {
		t.Errorf("a writable bind wrote to the context: %q", b)
	}
	var names []string
	filepath.Walk(sandbox.UpperDir(tmp), func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			rel, _ := filepath.Rel(sandbox.UpperDir(tmp), p)
			names = append(names, rel)
		}
		return nil
	})
	got := strings.Join(names, " ")
	if got != ". created etc etc/group" {
		t.Errorf("upper directory holds %q, want the new file and the whiteout only", got)
	}
}

// modeNumber numbers a mode (a marker per mode: "userns", "chroot" and
// "ptrace" have the same length).
func modeNumber(m sandbox.Mode) int {
	for i, x := range sandbox.Modes() {
		if x == m {
			return i
		}
	}
	return 9
}

// TestRunKilledWithItsTree: cancelling a step kills the command and what
// it started (in the background, in a session of its own), and leaves no
// mount behind.
func TestRunKilledWithItsTree(t *testing.T) {
	eachMode(t, func(t *testing.T, fx *fixture) {
		// Unique per mode and test process (the whole pid: the RUN
		// suites of two users may run at once), and small as a number
		// of seconds to sleep: 31M.PID.
		marker := "31" + strconv.Itoa(modeNumber(fx.sb.Mode())) + "." + strconv.Itoa(os.Getpid())
		step := sandbox.Step{Env: []string{"PATH=/bin:/usr/bin"},
			Args: []string{"/bin/sh", "-c", "sleep " + marker + " & (sleep " + marker + " &) ; setsid sleep " + marker + " & sleep " + marker}}
		fx.prepare(t, &step)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := fx.sb.Run(ctx, step)
			done <- err
		}()
		// Wait until the sleeps run.
		deadline := time.Now().Add(30 * time.Second)
		for countSleeps(marker) < 4 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := countSleeps(marker); n < 4 {
			t.Fatalf("%d of 4 sleeps started", n)
		}
		cancel()
		if err := <-done; err == nil {
			t.Error("a cancelled step returned no error")
		}
		deadline = time.Now().Add(10 * time.Second)
		for countSleeps(marker) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := countSleeps(marker); n > 0 {
			t.Errorf("%d processes of the step survived", n)
		}
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		if strings.Contains(string(mounts), step.TempDir) {
			t.Errorf("a mount of the step is left:\n%s", mounts)
		}
	})
}

// countSleeps counts the host's processes running "sleep MARKER" (the
// whole argument: a marker may be the start of another's).
func countSleeps(marker string) int {
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), "sleep\x00"+marker+"\x00") {
			n++
		}
	}
	return n
}

func TestCommandString(t *testing.T) {
	if got := sandbox.CommandString([]string{"/bin/sh", "-c", "echo 'a b'"}); got != `/bin/sh -c 'echo '\''a b'\'''` {
		t.Errorf("got %s", got)
	}
}

// TestRunJobNotInHelperEnvironment: the step's environment (build args,
// secret variables) reaches the step only: no sandbox helper carries it in
// its own environment, where other processes of the user could read it.
func TestRunJobNotInHelperEnvironment(t *testing.T) {
	eachMode(t, func(t *testing.T, fx *fixture) {
		secret := fmt.Sprintf("kiln-secret-%d-%d", os.Getpid(), time.Now().UnixNano())
		step := sandbox.Step{Env: []string{"PATH=/bin", "TOKEN=" + secret}, Args: []string{"/bin/sh", "-c", "sleep 3"}}
		fx.prepare(t, &step)
		done := make(chan error, 1)
		go func() {
			_, err := fx.sb.Run(context.Background(), step)
			done <- err
		}()
		// Look until the step ends (a fixed window could close before a
		// loaded machine has started the helper).
		helpers := 0
		var err error
		for ended := false; !ended; {
			select {
			case err = <-done:
				ended = true
			case <-time.After(50 * time.Millisecond):
			}
			ents, _ := os.ReadDir("/proc")
			for _, e := range ents {
				cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
				if err != nil || !strings.HasPrefix(string(cmdline), "kiln-sandbox-init") {
					continue
				}
				helpers++
				if env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ")); err == nil && strings.Contains(string(env), secret) {
					t.Errorf("helper %s carries the step's environment in its own", e.Name())
				}
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		if helpers == 0 && fx.sb.Mode() != sandbox.ModePtrace {
			t.Error("no helper seen while the step ran")
		}
	})
}

// TestRunMountsEveryMode: cache, bind (of a directory and of a file) and
// tmpfs mounts work in every mode: the cache keeps what a step wrote for
// the next step, a bind shows the source and never changes it, a tmpfs
// starts empty, what the image had at a target comes back, and none of it
// is left in the root.
func TestRunMountsEveryMode(t *testing.T) {
	eachMode(t, func(t *testing.T, fx *fixture) {
		cache := filepath.Join(t.TempDir(), "cache")
		if err := os.MkdirAll(cache, 0o755); err != nil {
			t.Fatal(err)
		}
		src := t.TempDir()
		os.WriteFile(filepath.Join(src, "in.txt"), []byte("from-context\n"), 0o644)
		os.Symlink("/etc/passwd", filepath.Join(src, "link"))
		file := filepath.Join(t.TempDir(), "one")
		os.WriteFile(file, []byte("file-mount\n"), 0o444)
		mounts := []sandbox.Mount{
			{Type: "cache", Target: "/var/c", Source: cache},
			{Type: "bind", Target: "/src", Source: src, ReadOnly: true},
			{Type: "bind", Target: "/etc/one", Source: file, ReadOnly: true},
			{Type: "tmpfs", Target: "/tmp"},
		}
		deep := "/bin/sub/t" // a target whose parent the image lacks
		mounts = append(mounts, sandbox.Mount{Type: "tmpfs", Target: deep})
		for round := 1; round <= 2; round++ {
			step := sandbox.Step{Mounts: mounts}
			script := `set -e
cat /src/in.txt /etc/one
test "$(readlink /src/link)" = /etc/passwd
(echo scribble >> /src/in.txt) 2>/dev/null || true
echo run >> /var/c/log
cat /var/c/log
test -z "$(ls -A /tmp)" && echo tmp-empty
touch /tmp/x
test -z "$DEEP" || touch $DEEP/y`
			fx.prepare(t, &step)
			var buf bytes.Buffer
			step.Args, step.Env, step.Stdout, step.Stderr = []string{"/bin/sh", "-c", script}, []string{"PATH=/bin", "DEEP=" + deep}, &buf, &buf
			res, err := fx.sb.Run(context.Background(), step)
			out := buf.String()
			if err != nil || res.ExitCode != 0 {
				t.Fatalf("round %d: %v %+v\n%s", round, err, res, out)
			}
			if step.Dir != "" {
				// A working copy: the mount points are gone, what the
				// image had is back (mount points the step made are
				// reported for its diff to leave out).
				created := map[string]bool{}
				for _, c := range res.Created {
					created[c] = true
				}
				for _, p := range []string{"src", "etc/one", "bin/sub", "var/c", "tmp/x"} {
					if _, err := os.Lstat(filepath.Join(step.Dir, p)); err == nil && !created[p] {
						t.Errorf("round %d: /%s is left in the working copy", round, p)
					}
				}
				if fi, err := os.Lstat(filepath.Join(step.Dir, "tmp")); err != nil || !fi.IsDir() {
					t.Errorf("round %d: the image's /tmp did not come back: %v", round, err)
				}
			}
			want := "from-context\nfile-mount\n" + strings.Repeat("run\n", round) + "tmp-empty\n"
			if out != want {
				t.Errorf("round %d: output\n%s\nwant\n%s", round, out, want)
			}
		}
		if b, _ := os.ReadFile(filepath.Join(src, "in.txt")); string(b) != "from-context\n" {
			t.Errorf("a bind mount changed its source: %q", b)
		}
		if fi, err := os.Lstat(cache); err != nil || !fi.IsDir() {
			t.Errorf("the cache directory is gone: %v", err)
		}
	})
}
