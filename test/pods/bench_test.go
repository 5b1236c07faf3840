package pods

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/sandbox"
)

// stepLine is kiln's log line for a finished RUN step.
var stepLine = regexp.MustCompile(`RUN done in ([0-9.]+)ms \(command ([0-9.]+)ms, diff and layer ([0-9.]+)ms, (\d+) entries\)`)

// BenchmarkManyFilesInContainer measures the 50,000-file RUN step
// (testdata/workloads/many-files) on the host and inside containers (the
// default seccomp profile as root: chroot mode; seccomp unconfined as root:
// userns mode), with the store on the container's own overlayfs and on a
// volume (an emptyDir's stand-in: a host directory), and ptrace mode on
// the host (not as root with CAP_SYS_ADMIN: refused there) and as uid 1000 with every capability dropped (Pod Security
// Standards restricted) on a volume. Each reports kiln's
// own split of the step: the command, the diff and layer, and the rest
// (working copy or overlay set-up), in milliseconds, and the whole build.
//
// KILN_PODS_BENCH_CELLS=a,b runs only those cells.
//
//	go test ./test/pods -run '^$' -bench ManyFiles -benchtime 3x
func BenchmarkManyFilesInContainer(b *testing.B) {
	testutil.SkipIfShort(b)
	f := setupImage(b)
	root, err := testutil.ModuleRoot()
	if err != nil {
		b.Fatal(err)
	}
	ctxDir := filepath.Join(root, "testdata", "workloads", "many-files")
	unconfined := []string{"--security-opt", "seccomp=unconfined"}
	restricted := []string{"--user", "1000:1000", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"}
	for _, c := range []struct {
		name      string
		host      bool
		args      []string
		isolation string
		volume    bool
	}{
		{name: "host-overlay", host: true},
		{name: "host-chroot", host: true, isolation: "chroot"},
		{name: "host-ptrace", host: true, isolation: "ptrace"},
		{name: "chroot-overlayfs"},
		{name: "chroot-volume", volume: true},
		{name: "userns-overlayfs", args: unconfined},
		{name: "userns-volume", args: unconfined, volume: true},
		{name: "ptrace-volume", args: restricted, volume: true},
	} {
		if f := os.Getenv("KILN_PODS_BENCH_CELLS"); f != "" && !slices.Contains(strings.Split(f, ","), c.name) {
			continue
		}
		b.Run(c.name, func(b *testing.B) {
			if c.host && c.isolation == "ptrace" {
				// Refused to root with CAP_SYS_ADMIN on the host.
				if _, _, err := sandbox.New(context.Background(), sandbox.Options{Mode: sandbox.ModePtrace, Exe: f.kiln}); err != nil {
					b.Skipf("ptrace mode on the host: %v", err)
				}
			}
			build := f.benchTarget(b, ctxDir, c.host, c.args, c.volume)
			args := []string{"build", "--no-cache", "--build-arg", "REGISTRY=" + f.reg}
			if c.isolation != "" {
				args = append([]string{"--isolation", c.isolation}, args...)
			}
			var step, cmd, diff, wall float64
			for i := 0; i < b.N; i++ {
				started := time.Now()
				out := build(args...)
				wall += float64(time.Since(started).Milliseconds())
				m := stepLine.FindStringSubmatch(out)
				if m == nil {
					b.Fatalf("no RUN timing in kiln's log:\n%s", out)
				}
				if m[4] != "50101" {
					b.Fatalf("the layer has %s entries, want 50101:\n%s", m[4], out)
				}
				step, cmd, diff = step+ms(m[1]), cmd+ms(m[2]), diff+ms(m[3])
			}
			n := float64(b.N)
			b.ReportMetric(step/n, "step-ms")
			b.ReportMetric(cmd/n, "command-ms")
			b.ReportMetric(diff/n, "diff-ms")
			b.ReportMetric((step-cmd-diff)/n, "setup-ms")
			b.ReportMetric(wall/n, "build-ms")
		})
	}
}

func ms(s string) float64 {
	v, _ := strconv.ParseFloat(s, 64)
	return v
}

// benchTarget returns a function that runs kiln with its arguments on the
// host or in a container of f's image (started here, removed when b
// ends), with its store on a volume or on the container's filesystem, and
// returns kiln's combined output.
func (f *fixture) benchTarget(b *testing.B, ctxDir string, host bool, args []string, volume bool) func(...string) string {
	if host {
		store := b.TempDir()
		return func(a ...string) string {
			return f.hostKiln(b, append(append([]string{"--root", store}, a...), ctxDir)...)
		}
	}
	name := "kiln-pods-bench-" + randomHex(4)
	run := []string{"run", "-d", "--name", name, "--network", "host", "-v", ctxDir + ":/ctx:ro"}
	if volume {
		vol := b.TempDir()
		if err := os.Chmod(vol, 0o1777); err != nil { // for a non-root user too
			b.Fatal(err)
		}
		run = append(run, "-v", vol+":/kiln", "-e", "KILN_ROOT=/kiln/store", "-e", "TMPDIR=/kiln")
	}
	f.d.Docker(b, append(append(run, args...), f.image, "/bin/sleep", "3600")...)
	b.Cleanup(func() { _, _ = f.d.TryDocker(context.Background(), "", "rm", "-f", name) })
	return func(a ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		out, err := f.d.TryDocker(ctx, "", "exec", name, "sh", "-c", "kiln "+strings.Join(a, " ")+" /ctx 2>&1")
		if err != nil {
			b.Fatal(err)
		}
		return out
	}
}
