package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testutil"
)

// ptraceDockerfile is the ptrace mode's workload: a busybox shell loop,
// useradd and chown (owners must reach the layer), dpkg -i of a package
// made in the step with a maintainer script that adds a user and chowns.
const ptraceDockerfile = `ARG REGISTRY
FROM ${REGISTRY}/library/busybox:latest AS bb
RUN mkdir /out && for i in $(seq 1 40); do echo $i > /out/f$i; done && cat /out/f* | wc -l > /out/count && rm /out/f* && chown 1000:1000 /out/count
FROM ${REGISTRY}/library/debian:bookworm
RUN useradd app && mkdir /data && echo hi > /data/f && chown -R app:app /data && chmod 0640 /data/f
RUN mkdir -p /tmp/p/DEBIAN /tmp/p/opt/hello && printf 'Package: hello\nVersion: 1.0\nArchitecture: all\nMaintainer: k <k@example.com>\nDescription: t\n' > /tmp/p/DEBIAN/control && printf '#!/bin/sh\nset -e\nuseradd -r -u 990 hellod\nchown hellod /opt/hello/f\n' > /tmp/p/DEBIAN/postinst && chmod 755 /tmp/p/DEBIAN/postinst && echo hello > /tmp/p/opt/hello/f && dpkg-deb --root-owner-group -b /tmp/p /tmp/hello.deb && dpkg -i /tmp/hello.deb && rm -rf /tmp/p /tmp/hello.deb
COPY --from=bb /out/count /count
`

// ptraceChecks are the entries the ptrace build must give (owners
// included), as every other mode does.
var ptraceChecks = map[string]string{
	"/data":        "/data dir 0755 1000:1000 - - -",
	"/data/f":      "/data/f file 0640 1000:1000 3 98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4 -",
	"/opt/hello/f": "/opt/hello/f file 0644 990:0 6 5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03 -",
	"/count":       "/count file 0644 1000:1000 3 673650f936cb3b0a2f93ce09d81be10748b1b203c19e8176b4eefc1964a0cf3a -",
}

// TestRunPtrace builds the workload with --isolation ptrace on this host
// and, where a docker daemon can be started (root, as in CI), inside a
// container with Pod Security Standards "restricted" settings (uid 1000,
// every capability dropped, no-new-privileges, Docker's default seccomp
// profile), where detection must pick ptrace as its last resort. Both
// images carry the owners the steps set.
func TestRunPtrace(t *testing.T) {
	reg := runRegistry(t)
	ctxDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(ptraceDockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "oci")
	r := kilnRun(t, nil, "--root", t.TempDir(), "--isolation", "ptrace", "build", "--build-arg", "REGISTRY="+reg,
		"--output", "type=oci,dest="+dest, "-t", "ptrace-test", ctxDir)
	switch {
	case os.Geteuid() == 0:
		// Root with CAP_SYS_ADMIN could write host sysctls from a traced
		// step: ptrace mode is refused there (test/security); the RUN
		// suites run this half again as kilnuser and kilnplain.
		if r.err == nil || !strings.Contains(r.stderr, "--isolation ptrace does not work here") {
			t.Errorf("ptrace mode as root with CAP_SYS_ADMIN was not refused:\n%s", r)
		}
	case r.err != nil:
		t.Fatalf("%v\n%s", r.err, r)
	default:
		if !strings.Contains(r.stderr, "isolation: ptrace") {
			t.Errorf("the build did not say it used ptrace mode:\n%s", r.stderr)
		}
		checkPtraceTree(t, "host", testutil.ImageTree(t, ociImage(t, dest)))
	}

	if os.Geteuid() != 0 {
		t.Skip("the in-container half needs root to start its docker daemon (CI runs it as root)")
	}
	t.Run("restricted-container", func(t *testing.T) {
		d := testutil.SharedDocker(t)
		bbRef := reg + "/library/busybox:latest"
		d.Docker(t, "pull", "-q", bbRef)
		out := t.TempDir()
		if err := os.Chmod(out, 0o777); err != nil {
			t.Fatal(err)
		}
		bin := testutil.KilnBinary(t)
		log := d.Run(t, "--network", "host", "--user", "1000:1000", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
			"-v", bin+":/kiln:ro", "-v", ctxDir+":/ctx:ro", "-v", out+":/out", "-e", "TMPDIR=/out",
			bbRef, "sh", "-c", "/kiln --root /out/store build --build-arg REGISTRY="+reg+" --output type=oci,dest=/out/oci -t ptrace-test /ctx 2>&1")
		if !strings.Contains(log, "isolation: ptrace") || !strings.Contains(log, "last resort") {
			t.Errorf("in the restricted container the build did not pick ptrace as its last resort:\n%s", log)
		}
		inside := testutil.ImageTree(t, ociImage(t, filepath.Join(out, "oci")))
		checkPtraceTree(t, "restricted container", inside)
	})
}

func checkPtraceTree(t *testing.T, where string, tree []string) {
	t.Helper()
	for p, want := range ptraceChecks {
		if got := testutil.TreeEntry(tree, p); got != want {
			t.Errorf("%s: %s is %q, want %q", where, p, got, want)
		}
	}
}
