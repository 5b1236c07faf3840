package security

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/sandbox"
)

// TestSandboxDiskLimit (finding 11, the quota): in every mode, a RUN
// step that writes past --disk-limit is stopped while it runs, with an
// error naming the Dockerfile line and the limit, and leaves nothing (no
// process, no mount, none of its files once the next build has run); a
// step under the limit builds the same image, from the same cache entry,
// as without one; a single file larger than the limit fails its write
// with EFBIG ("File too large"), not a signal.
func TestSandboxDiskLimit(t *testing.T) {
	t.Parallel()
	eachSandboxMode(t, func(t *testing.T, sb *sandbox.Sandbox, flags []string) {
		root := storeRoot(flags)
		bin := testutil.KilnBinary(t)
		tag := fmt.Sprintf("7%d.5", time.Now().UnixNano()%100000)
		// 4 MiB files, 64 MiB in all (each under the limit: only the
		// watcher can stop it), then a sleep the watcher must cut short.
		r := buildDockerfile(t, append(flags, "--disk-limit", "16m"), "fill:1",
			"FROM {{BASE}}\nRUN i=0; while [ $i -lt 16 ]; do dd if=/dev/zero of=/kiln-quota-$i bs=1M count=4 2>/dev/null || exit 9; i=$((i+1)); done; echo wrote-all; sleep "+tag+"; echo slept-$((1+1))\n")
		mustFail(t, r, "Dockerfile:2", "RUN", "the step wrote more than 16MiB (--disk-limit)")
		if strings.Contains(r.stdout+r.stderr, "slept-2") {
			t.Errorf("the step ran to its end")
		}
		if n := processesWith(t, "sleep "+tag); n > 0 {
			t.Errorf("%d of the step's processes are left", n)
		}
		if procs, mounts := leftovers(bin, root); len(procs)+len(mounts) > 0 {
			t.Errorf("left processes %v and mounts %v", procs, mounts)
		}

		// Under the limit: the same step as without one (the limit is
		// no part of the step's cache key), and the build works.
		df := "FROM {{BASE}}\nRUN dd if=/dev/zero of=/small bs=1M count=4 && echo small-ok\n"
		ok1 := buildDockerfile(t, append(flags, "--disk-limit", "16m"), "small:1", df)
		if ok1.err != nil {
			t.Fatalf("a step writing 4 MiB under --disk-limit 16m failed: %v\n%s", ok1.err, ok1)
		}
		ok2 := buildDockerfile(t, flags, "small:2", df)
		if ok2.err != nil {
			t.Fatalf("%v\n%s", ok2.err, ok2)
		}
		if !strings.Contains(ok2.stderr, "CACHED /bin/sh -c dd") {
			t.Errorf("the step built under --disk-limit is not the cache entry of the same step without it\n%s\n%s", ok1, ok2)
		}
		// The stopped step's files are gone once the next build has run
		// (a working copy is only moved aside by the failed build).
		if left := findNamed(root, "kiln-quota-3"); len(left) > 0 {
			t.Errorf("the stopped step's files are left: %v", left)
		}

		// One file larger than the limit: EFBIG for the writer, which
		// lives on (on a tmpfs mount: RLIMIT_FSIZE holds there too, and
		// the step's layer stays under the limit).
		big := buildDockerfile(t, append(flags, "--storage-opt", "size=16m"), "big:1",
			"FROM {{BASE}}\nRUN --mount=type=tmpfs,target=/t dd if=/dev/zero of=/t/big bs=1M count=32; echo dd-exit-$?; ls -l /t/big\n")
		if big.err != nil {
			t.Fatalf("the step that writes its big file on a tmpfs failed: %v\n%s", big.err, big)
		}
		out := big.stdout + big.stderr
		if !strings.Contains(out, "File too large") || !strings.Contains(out, "dd-exit-1") {
			t.Errorf("a write past RLIMIT_FSIZE did not fail with EFBIG\n%s", big)
		}
		if !strings.Contains(out, " 16777216 ") {
			t.Errorf("the big file did not stop at 16 MiB\n%s", big)
		}
	})
}

// TestSandboxDiskReserve: with no --disk-limit, a step that writes while
// the store's filesystem has less than --disk-reserve available is
// stopped, with an error naming the reserve (the reserve is set just
// below what is available now, so the test fills nothing).
func TestSandboxDiskReserve(t *testing.T) {
	t.Parallel()
	eachSandboxMode(t, func(t *testing.T, sb *sandbox.Sandbox, flags []string) {
		root := storeRoot(flags)
		var sf unix.Statfs_t
		if err := unix.Statfs(root, &sf); err != nil {
			t.Fatal(err)
		}
		avail := int64(sf.Bavail) * sf.Bsize
		reserve := avail - 48<<20
		if reserve <= 0 {
			t.Skipf("only %d bytes available at %s", avail, root)
		}
		tag := fmt.Sprintf("6%d.5", time.Now().UnixNano()%100000)
		// The step writes up to 1 GiB, not just past the 48 MiB: the
		// filesystem is shared with parallel tests (and, in CI, other
		// packages' tests), whose cleanups may free space after the
		// reserve was set; the reserve then needs more than 48 MiB to be
		// reached.
		r := buildDockerfile(t, append(flags, "--disk-reserve", fmt.Sprint(reserve)), "reserve:1",
			"FROM {{BASE}}\nRUN i=0; while [ $i -lt 256 ]; do dd if=/dev/zero of=/kiln-reserve-$i bs=1M count=4 2>/dev/null || exit 9; i=$((i+1)); done; sleep "+tag+"; echo slept-$((1+1))\n")
		mustFail(t, r, "Dockerfile:2", "kept free (--disk-reserve): the step was stopped")
		if strings.Contains(r.stdout+r.stderr, "slept-2") {
			t.Errorf("the step ran to its end")
		}
		if n := processesWith(t, "sleep "+tag); n > 0 {
			t.Errorf("%d of the step's processes are left", n)
		}
		// The next build cleans up; nothing of the step is left.
		if ok := buildDockerfile(t, flags, "after:1", "FROM {{BASE}}\nRUN echo after\n"); ok.err != nil {
			t.Fatalf("the build after the stopped one failed: %v\n%s", ok.err, ok)
		}
		if left := findNamed(root, "kiln-reserve-3"); len(left) > 0 {
			t.Errorf("the stopped step's files are left: %v", left)
		}
	})
}
