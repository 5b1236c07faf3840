package security

import (
	"bytes"
	"context"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/store"
)

// killIterations is how many builds the kill suite kills
// (KILN_KILL_ITERATIONS, default 50).
func killIterations(t *testing.T) int {
	if v := os.Getenv("KILN_KILL_ITERATIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("KILN_KILL_ITERATIONS=%q: want a positive number", v)
		}
		return n
	}
	return 50
}

// TestKillSuite SIGKILLs a build that has a RUN step, a COPY --from an
// image and a push at random points (up to the time a whole build takes).
// After each kill the store verifies (every blob's digest, every ref
// complete), no process and no mount of the build is left, the next kiln
// command leaves no temp directory of the killed one, and every few kills
// (and at the end) a build succeeds on the same store.
func TestKillSuite(t *testing.T) {
	testutil.SkipIfShort(t)
	t.Parallel()
	base := busyboxRef(t)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{
		"Dockerfile": "FROM " + base + "\nRUN echo run > /run.txt && ls /bin > /bins\nCOPY --from=" + base + " /bin/busybox /copied/busybox\nCOPY a /a\n",
		"a":          "a\n",
	})
	root := t.TempDir()
	target := strings.Replace(base, "library/busybox:1", "kill/app:1", 1)
	args := []string{"--root", root, "build", "--no-cache", "--push", "-t", target, ctx}

	build := func() (time.Duration, result) {
		start := time.Now()
		r := kilnRun(t, nil, nil, args...)
		return time.Since(start), r
	}
	full, r := build()
	if r.err != nil {
		if strings.Contains(r.stderr, "isolation") && strings.Contains(r.stderr, "none") {
			t.Skipf("no RUN sandbox here:\n%s", r)
		}
		t.Fatalf("the build fails before any kill: %v\n%s", r.err, r)
	}
	bin := testutil.KilnBinary(t)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	n := killIterations(t)
	for i := 0; i < n; i++ {
		at := time.Duration(rng.Int63n(int64(full) + 1))
		cmd := exec.Command(bin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(at)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		checkAfterKill(t, i, at, root, bin, stderr.String())
		if i%10 == 9 || i == n-1 {
			if _, r := build(); r.err != nil {
				t.Fatalf("kill %d (at %s): the next build fails: %v\n%s", i, at, r.err, r)
			}
		}
	}
}

// checkAfterKill checks what a killed build left in the store at root.
func checkAfterKill(t *testing.T, i int, at time.Duration, root, bin, stderr string) {
	t.Helper()
	where := func() string { return "kill " + strconv.Itoa(i) + " at " + at.String() + "; its stderr:\n" + stderr }
	// Processes and mounts of the build go away with it (a moment for the
	// kernel to reap a pid namespace).
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs, mounts := leftovers(bin, root)
		if len(procs)+len(mounts) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s\nleft processes %v and mounts %v", where(), procs, mounts)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The next kiln command cleans the temp area of what belongs to nobody
	// (sparing, by design, files younger than a moment: a writer locks its
	// file right after creating it); what stays is an error.
	waitOlder(filepath.Join(root, "tmp"), 3*time.Second)
	if r := kilnRun(t, nil, nil, "--root", root, "images", "-q"); r.err != nil {
		t.Fatalf("%s\nkiln images after the kill: %v\n%s", where(), r.err, r)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "tmp")); len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("%s\nthe store's tmp/ still holds %v after the next kiln command", where(), names)
	}
	st, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Verify(context.Background()); err != nil {
		t.Fatalf("%s\nthe store does not verify: %v", where(), err)
	}
}

// leftovers lists processes running bin with root in their arguments and
// mounts below root.
func leftovers(bin, root string) (procs, mounts []string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if exe != bin {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(cmdline, []byte(root)) {
			procs = append(procs, e.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], root) {
			mounts = append(mounts, f[4])
		}
	}
	return procs, mounts
}

// waitOlder waits until every entry of dir is older than age.
func waitOlder(dir string, age time.Duration) {
	ents, _ := os.ReadDir(dir)
	var newest time.Time
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.ModTime().After(newest) {
			newest = fi.ModTime()
		}
	}
	if d := time.Until(newest.Add(age)); d > 0 {
		time.Sleep(d)
	}
}
