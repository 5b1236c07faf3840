package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/sandbox"
)

// TestRunBuildExtras: docker build's --add-host, --ulimit and --shm-size
// reach every RUN step (its /etc/hosts, its limits, its /dev/shm), and
// are part of the steps' cache keys: the same flags reuse the step, other
// ones run it again. Where a mode cannot give one (no mount namespace for
// /dev/shm, ptrace for limits), the build fails saying so.
func TestRunBuildExtras(t *testing.T) {
	testutil.SkipIfShort(t)
	sb := requireRun(t)
	reg := testutil.StartRegistry(t)
	testutil.PushImage(t, reg+"/library/busybox:latest", testutil.BusyboxImage(t))
	dir := t.TempDir()
	df := "FROM " + reg + "/library/busybox\n" +
		"RUN grep db.internal /etc/hosts > /hosts; ulimit -n > /nofile; ulimit -Hn >> /nofile; df -k /dev/shm | tail -1 | awk '{print $2}' > /shm\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	root := runStore(t)
	out := t.TempDir()
	args := []string{"--root", root, "build", "--add-host", "db.internal:10.1.2.3", "--add-host=v6.internal=[fd00::1]", "-o", "type=local,dest=" + out, dir}
	features := sb.Features()
	ptrace := sb.Mode() == sandbox.ModePtrace
	if features.Mounts {
		args = append(args[:len(args)-1], "--shm-size", "32m", dir)
	}
	if !ptrace {
		args = append(args[:len(args)-1], "--ulimit", "nofile=512:1024", dir)
	}
	kiln(t, args...)
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if h := read("hosts"); !strings.Contains(h, "10.1.2.3") || strings.Contains(h, "fd00") {
		t.Errorf("/etc/hosts of the step, db.internal lines: %q", h)
	}
	if features.Mounts {
		if s := read("shm"); s != "32768" {
			t.Errorf("/dev/shm is %s KiB, want 32768 (--shm-size 32m)", s)
		}
	}
	if !ptrace {
		if n := read("nofile"); n != "512\n1024" {
			t.Errorf("ulimit -n, -Hn: %q, want 512 and 1024", n)
		}
	}
	// The same flags: cached. Another host: the step runs again.
	if r := kiln(t, args...); !strings.Contains(r.stderr, "CACHED") {
		t.Errorf("same --add-host: the step ran again:\n%s", r)
	}
	args[4] = "db.internal:10.9.9.9"
	if r := kiln(t, args...); strings.Contains(r.stderr, "CACHED") || !strings.Contains(read("hosts"), "10.9.9.9") {
		t.Errorf("another --add-host: the step was reused:\n%s", r)
	}
	// What a mode cannot give is an error, not a silent default.
	if !features.Mounts {
		r := kilnRun(t, nil, "--root", root, "build", "--shm-size", "32m", dir)
		if r.err == nil || !strings.Contains(r.stderr, "--shm-size needs a mount namespace") {
			t.Errorf("--shm-size in %s mode:\n%s", sb.Mode(), r)
		}
	}
	if ptrace {
		r := kilnRun(t, nil, "--root", root, "build", "--ulimit", "nofile=512", dir)
		if r.err == nil || !strings.Contains(r.stderr, "--ulimit: ptrace mode cannot") {
			t.Errorf("--ulimit in ptrace mode:\n%s", r)
		}
	}
	// Values docker refuses, kiln refuses too, before any work.
	for flag, want := range map[string]string{
		"--add-host=db":                "want NAME:IP",
		"--add-host=db x:host-gateway": "is not a host name",
		"--add-host=db:10.1.2":         "is not an IP address",
		"--ulimit=nofiles=1":           `unknown limit "nofiles"`,
		"--ulimit=nofile=2048:1024":    "the soft limit exceeds the hard limit",
		"--ulimit=nofile=lots":         "is not a number",
		"--shm-size=big":               "want a positive size",
		"--shm-size=-1":                "want a positive size",
		"--add-hosts=db:10.1.2.3":      "unknown flag: --add-hosts",
		"--ulimits=nofile=1":           "unknown flag: --ulimits",
		"--shmsize=1g":                 "unknown flag: --shmsize",
		"--add-host=db:10.1.2.3:extra": "is not an IP address",
	} {
		r := kilnRun(t, nil, "--root", root, "build", flag, dir)
		if r.err == nil || !strings.Contains(r.stderr, want) {
			t.Errorf("%s: want an error saying %q:\n%s", flag, want, r)
		}
	}
}

// TestRunBuildHostGateway: --add-host NAME:host-gateway names the address
// at which a RUN step reaches a service listening on the host (here on
// the host's loopback, the harder case): 127.0.0.1 on the host's network,
// slirp4netns's gateway 10.0.2.2 on a private one (which then forwards to
// the host's loopback). A step without a network does not get the name.
func TestRunBuildHostGateway(t *testing.T) {
	testutil.SkipIfShort(t)
	sb := requireRun(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the host %s\n", r.URL.Path)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	reg := testutil.StartRegistry(t)
	testutil.PushImage(t, reg+"/library/busybox:latest", testutil.BusyboxImage(t))
	dir := t.TempDir()
	url := fmt.Sprintf("http://gw.internal:%d", port)
	df := "FROM " + reg + "/library/busybox\n" +
		"RUN wget -q -O /default " + url + "/default && grep gw.internal /etc/hosts > /default-hosts\n" +
		"RUN --network=host wget -q -O /host " + url + "/host && grep gw.internal /etc/hosts > /host-hosts\n"
	if sb.Features().NetworkNamespace {
		df += "RUN --network=none sh -c 'grep gw.internal /etc/hosts > /none-hosts; echo $? > /none-status'\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	kiln(t, "--root", runStore(t), "build", "--add-host", "gw.internal:host-gateway", "-o", "type=local,dest="+out, dir)
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	for _, step := range []string{"default", "host"} {
		if got := read(step); got != "hello from the host /"+step {
			t.Errorf("RUN (network %s) reading the host's service at gw.internal: %q", step, got)
		}
	}
	n, why := sb.DefaultNetwork()
	t.Logf("%s mode, default network %s %s", sb.Mode(), n, why)
	want := "10.0.2.2"
	if n == sandbox.NetworkHost {
		want = "127.0.0.1"
	}
	if h := read("default-hosts"); !strings.HasPrefix(h, want+"\t") {
		t.Errorf("default network: gw.internal is %q, want %s", h, want)
	}
	if h := read("host-hosts"); !strings.HasPrefix(h, "127.0.0.1\t") {
		t.Errorf("host network: gw.internal is %q, want 127.0.0.1", h)
	}
	if sb.Features().NetworkNamespace {
		if s := read("none-status"); s != "1" {
			t.Errorf("--network=none: gw.internal is in /etc/hosts (%q)", read("none-hosts"))
		}
	}
}
