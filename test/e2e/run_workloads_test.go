package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/internal/testutil/harness"
	"github.com/kiln-build/kiln/pkg/sandbox"
)

// The RUN suite runs as whoever runs the tests: CI runs it as root, as a
// user with /etc/subuid ranges and as one without.

// runRegistry starts a registry holding the workloads' bases until the
// test ends: library/busybox:latest, library/debian:bookworm and
// library/debian-big:bookworm (debian plus a generated layer of 10,000
// files; the benchmarks use the 1 GiB one of ../shared/testenv).
func runRegistry(t *testing.T) string {
	t.Helper()
	testutil.SkipIfShort(t)
	reg := testutil.StartRegistry(t)
	debian := testutil.DebianImage(t)
	testutil.PushImage(t, reg+"/library/busybox:latest", testutil.BusyboxImage(t))
	testutil.PushImage(t, reg+"/library/debian:bookworm", debian)
	testutil.PushImage(t, reg+"/library/debian-big:bookworm", bigDebian(t, debian))
	return reg
}

// bigDebian is debian with one more layer: /opt/big/dNNN/fNNNN, 100 x 100
// files of 1 KiB each.
func bigDebian(t *testing.T, debian v1.Image) v1.Image {
	t.Helper()
	var files []harness.File
	for d := 0; d < 100; d++ {
		for f := 0; f < 100; f++ {
			files = append(files, harness.Reg(fmt.Sprintf("opt/big/d%03d/f%04d", d, f), 0o644, strings.Repeat(fmt.Sprintf("%03d%04d", d, f), 128)))
		}
	}
	b, err := harness.LayerTar(files)
	if err != nil {
		t.Fatal(err)
	}
	l, err := harness.LayerFromTar(b)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.Append(debian, mutate.Addendum{Layer: l, History: v1.History{CreatedBy: "generated /opt/big"}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// runStore is a kiln store for one test, whose unpacked layers (which may
// belong to subordinate ids) are removed through the sandbox.
func runStore(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	t.Cleanup(func() {
		sb, _, err := sandbox.New(context.Background(), sandbox.Options{})
		if err == nil && sb.Mode() != sandbox.ModeNone {
			_ = sb.Remove(context.Background(), filepath.Join(root, "rootfs"))
		}
	})
	return root
}

// buildWorkload builds testdata/workloads/NAME into an OCI layout and
// returns the image and the build's stderr.
func buildWorkload(t *testing.T, reg, root, name string, extra ...string) (v1.Image, string) {
	t.Helper()
	return buildWorkloadFlags(t, reg, root, name, extra, nil)
}

// buildWorkloadFlags is buildWorkload with global flags and build flags.
func buildWorkloadFlags(t *testing.T, reg, root, name string, global, flags []string) (v1.Image, string) {
	t.Helper()
	dir := workload(t, name)
	dest := filepath.Join(t.TempDir(), "oci")
	args := append([]string{"--root", root}, global...)
	args = append(args, "build", "--build-arg", "REGISTRY="+reg, "--output", "type=oci,dest="+dest, "-t", name)
	args = append(append(args, flags...), dir)
	r := kiln(t, args...)
	if !strings.Contains(r.stderr, "isolation: ") {
		t.Errorf("build did not say its isolation mode:\n%s", r.stderr)
	}
	return ociImage(t, dest), r.stderr
}

// requireRun skips when this environment has no sandbox (then the test
// checks that RUN fails with a pointer to kiln doctor).
func requireRun(t *testing.T) *sandbox.Sandbox {
	t.Helper()
	sb, _, err := sandbox.New(context.Background(), sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if sb.Mode() == sandbox.ModeNone {
		t.Skipf("no isolation here: %s", sb.Reason())
	}
	return sb
}

func runWorkloadManyFiles(t *testing.T, reg string) {
	img, _ := buildWorkload(t, reg, runStore(t), "many-files")
	layers, _ := img.Layers()
	run := testutil.LayerTree(t, layers[len(layers)-1])
	files := 0
	for _, l := range run {
		if strings.HasPrefix(l, "/data/") && strings.Contains(l, " file 0644 0:0 ") {
			files++
		}
	}
	if files != 50000 {
		t.Errorf("RUN layer has %d files under /data, want 50000", files)
	}
	if l := testutil.TreeEntry(run, "/data/42/417"); !strings.Contains(l, sha256Hex("42/417\n")) {
		t.Errorf("/data/42/417: %s", l)
	}
	if l := testutil.TreeEntry(run, "/data"); !strings.Contains(l, " dir 0755 0:0 ") {
		t.Errorf("/data: %s", l)
	}
}

func runWorkloadBigBaseSmallRuns(t *testing.T, reg string) {
	root := runStore(t)
	img, log := buildWorkload(t, reg, root, "big-base-small-runs")
	tree := testutil.ImageTree(t, img)
	for i := 1; i <= 10; i++ {
		p := fmt.Sprintf("/step%d", i)
		if l := testutil.TreeEntry(tree, p); !strings.Contains(l, " file 0644 0:0 ") || !strings.Contains(l, sha256Hex(fmt.Sprintf("%d\n", i))) {
			t.Errorf("%s: %q", p, l)
		}
	}
	if testutil.TreeEntry(tree, "/opt/big/d099/f0099") == "" {
		t.Error("the big base's files are gone")
	}
	layers, _ := img.Layers()
	if len(layers) != 12 {
		t.Errorf("%d layers, want 2 base + 10 RUN", len(layers))
	}
	// Each RUN layer holds its one file: a step costs what it changed.
	for i, l := range layers[2:] {
		if lt := testutil.LayerTree(t, l); len(lt) != 1 {
			t.Errorf("RUN %d layer has %d entries: %v", i+1, len(lt), lt)
		}
	}
	if !strings.Contains(log, "unpacked 2 layer(s)") {
		t.Errorf("first build did not unpack the 2 base layers:\n%s", log)
	}
	// A second build takes all ten steps from the step cache: the same
	// layers, nothing run, nothing unpacked.
	img2, log2 := buildWorkload(t, reg, root, "big-base-small-runs")
	if n := strings.Count(log2, "CACHED"); n != 10 || strings.Contains(log2, "RUN done") || strings.Contains(log2, "unpacked") {
		t.Errorf("second build: %d steps cached, want 10:\n%s", n, log2)
	}
	layers2, _ := img2.Layers()
	for i := range layers {
		a, _ := layers[i].Digest()
		b, _ := layers2[i].Digest()
		if a != b {
			t.Errorf("layer %d: %s, then from the cache %s", i, a, b)
		}
	}
	// With --no-cache the steps run again, on the base unpacked once.
	_, log3 := buildWorkloadFlags(t, reg, root, "big-base-small-runs", nil, []string{"--no-cache"})
	if strings.Contains(log3, "unpacked") || strings.Contains(log3, "CACHED") || strings.Count(log3, "RUN done") != 10 {
		t.Errorf("--no-cache build unpacked layers or used the cache:\n%s", log3)
	}
}

func runWorkloadMultiStage(t *testing.T, reg string) {
	img, _ := buildWorkload(t, reg, runStore(t), "multi-stage")
	tree := testutil.ImageTree(t, img)
	if len(tree) != 1 || !strings.HasPrefix(tree[0], "/payload.bin file 0644 0:0 20971520 ") {
		t.Errorf("final image: %v", tree)
	}
	cfg, _ := img.ConfigFile()
	if cfg.Config.User != "1000" || len(cfg.Config.Entrypoint) != 1 {
		t.Errorf("config: %+v", cfg.Config)
	}
}

func runWorkloadAptInstall(t *testing.T, reg string) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skip("Debian image for this architecture")
	}
	img, log := buildWorkload(t, reg, runStore(t), "apt-install")
	tree := testutil.ImageTree(t, img)
	py := ""
	for _, l := range tree {
		if strings.HasPrefix(l, "/usr/bin/python3.") && strings.Contains(l, " file ") {
			py = l
		}
	}
	if !strings.Contains(py, " file 0755 0:0 ") {
		t.Errorf("no python3 interpreter owned by root with mode 0755 (%q)\n%s", py, log)
	}
	if l := testutil.TreeEntry(tree, "/usr/bin/python3"); !strings.Contains(l, " symlink ") {
		t.Errorf("/usr/bin/python3: %q", l)
	}
	for _, l := range tree {
		if strings.HasPrefix(l, "/var/lib/apt/lists/") && !strings.HasPrefix(l, "/var/lib/apt/lists/partial") && !strings.HasPrefix(l, "/var/lib/apt/lists/lock") {
			t.Errorf("apt lists left in the image: %s", l)
			break
		}
	}
	// Owners other than root survive (apt's own directory belongs to _apt).
	if l := testutil.TreeEntry(tree, "/var/cache/apt/archives/partial"); l == "" {
		t.Errorf("no /var/cache/apt/archives/partial")
	}
}

// TestRunWorkloads builds the four reference workloads and checks their
// files, owners and modes.
func TestRunWorkloads(t *testing.T) {
	testutil.SkipIfShort(t)
	requireRun(t)
	reg := runRegistry(t)
	t.Run("many-files", func(t *testing.T) { runWorkloadManyFiles(t, reg) })
	t.Run("big-base-small-runs", func(t *testing.T) { runWorkloadBigBaseSmallRuns(t, reg) })
	t.Run("multi-stage", func(t *testing.T) { runWorkloadMultiStage(t, reg) })
	t.Run("apt-install", func(t *testing.T) { runWorkloadAptInstall(t, reg) })
}

// TestRunDoctor: kiln doctor names the mode and every setting.
func TestRunDoctor(t *testing.T) {
	testutil.SkipIfShort(t)
	r := kiln(t, "doctor")
	sb := requireRun(t)
	if !strings.Contains(r.stdout, "isolation: "+string(sb.Mode())) || !strings.Contains(r.stdout, "settings:") {
		t.Errorf("kiln doctor:\n%s", r.stdout)
	}
	if sb.SingleMapping() && !strings.Contains(r.stdout, "/etc/subuid") {
		t.Errorf("doctor without subordinate ids does not say how to add them:\n%s", r.stdout)
	}
	// --isolation none: RUN fails and says where to look.
	dir := t.TempDir()
	reg := testutil.StartInProcessRegistry(t)
	testutil.PushImage(t, reg+"/library/busybox:latest", testutil.BusyboxImage(t))
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+reg+"/library/busybox\nRUN true\n"), 0o644)
	fail := kilnRun(t, nil, "--root", t.TempDir(), "--isolation", "none", "build", dir)
	if fail.err == nil || !strings.Contains(fail.stderr, "kiln doctor") || !strings.Contains(fail.stderr, "Dockerfile:2") {
		t.Errorf("RUN with --isolation none:\n%s", fail)
	}
}

// TestRunInterrupted: SIGINT (and SIGKILL) of kiln during a RUN step take
// the step's whole process tree down and leave no mount and no step
// directory behind.
func TestRunInterrupted(t *testing.T) {
	testutil.SkipIfShort(t)
	requireRun(t)
	reg := testutil.StartInProcessRegistry(t)
	testutil.PushImage(t, reg+"/library/busybox:latest", testutil.BusyboxImage(t))
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			// Unique per signal and test process (the whole pid: the
			// RUN suites of two users may run at once): 4SS.PID seconds.
			marker := fmt.Sprintf("4%02d.%d", int(sig), os.Getpid())
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(fmt.Sprintf(
				"FROM %s/library/busybox\nRUN sleep %s & (sleep %s &) ; sleep %s\n", reg, marker, marker, marker)), 0o644)
			root := runStore(t)
			cmd := exec.Command(testutil.KilnBinary(t), "--root", root, "build", dir)
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(time.Minute)
			for countProcs("sleep\x00"+marker+"\x00") < 3 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if n := countProcs("sleep\x00" + marker + "\x00"); n < 3 {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("%d of 3 sleeps started\n%s", n, out.String())
			}
			cmd.Process.Signal(sig)
			err := cmd.Wait()
			if err == nil {
				t.Errorf("kiln exited 0 after %s", sig)
			}
			deadline = time.Now().Add(10 * time.Second)
			for countProcs("sleep\x00"+marker+"\x00") > 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if n := countProcs("sleep\x00" + marker + "\x00"); n > 0 {
				t.Errorf("%d processes of the step survived %s", n, sig)
			}
			mounts, _ := os.ReadFile("/proc/self/mountinfo")
			if strings.Contains(string(mounts), root) {
				t.Errorf("a mount of the build is left after %s", sig)
			}
			if sig != syscall.SIGKILL {
				left, _ := filepath.Glob(filepath.Join(root, "rootfs", "*", "tmp", "*"))
				if len(left) > 0 {
					t.Errorf("step directories left after %s: %v", sig, left)
				}
			}
		})
	}
}

// countProcs counts the processes (of any user) whose command line holds
// s.
func countProcs(s string) int {
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), s) && e.Name() != strconv.Itoa(os.Getpid()) {
			n++
		}
	}
	return n
}

// TestRunChrootWithoutSysAdmin: root without CAP_SYS_ADMIN (a default
// unprivileged container) gets a user namespace where new ones are allowed
// (here: no seccomp filter), and chroot mode works there when asked (and is
// what detection falls back to where user namespaces are refused).
func TestRunChrootWithoutSysAdmin(t *testing.T) {
	testutil.SkipIfShort(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	testutil.RequireProgram(t, "/usr/bin/setpriv", "util-linux")
	reg := testutil.StartInProcessRegistry(t)
	testutil.PushImage(t, reg+"/library/busybox:latest", testutil.BusyboxImage(t))
	bin := testutil.KilnBinary(t)
	drop := []string{"--inh-caps=-sys_admin", "--bounding-set=-sys_admin", bin}
	out, err := exec.Command("/usr/bin/setpriv", append(drop, "doctor")...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "isolation: userns") {
		t.Fatalf("doctor without CAP_SYS_ADMIN (user namespaces allowed): %v\n%s", err, out)
	}
	drop = append(drop, "--isolation", "chroot")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+reg+"/library/busybox\nRUN echo hi > /hi && chown 33:33 /hi && rm /etc/group\n"), 0o644)
	dest := filepath.Join(t.TempDir(), "oci")
	out, err = exec.Command("/usr/bin/setpriv", append(drop, "--root", t.TempDir(), "build", "-o", "type=oci,dest="+dest, dir)...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "isolation: chroot") {
		t.Fatalf("build without CAP_SYS_ADMIN: %v\n%s", err, out)
	}
	tree := testutil.ImageTree(t, ociImage(t, dest))
	if l := testutil.TreeEntry(tree, "/hi"); !strings.Contains(l, " file 0644 33:33 3 ") {
		t.Errorf("/hi: %q", l)
	}
	if testutil.TreeEntry(tree, "/etc/group") != "" || testutil.TreeEntry(tree, "/dev/null") != "" {
		t.Errorf("whiteout missing or device stub leaked:\n%s", strings.Join(tree, "\n"))
	}
}
