package testutil

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-build/kiln/internal/testutil/harness"
)

// Docker is a private docker daemon (Debian's docker.io: dockerd 20.10
// with BuildKit built in) for tests: the reference builder of the
// differential tests, and a container runtime to run kiln in containers.
// Its methods call /usr/bin/docker (harness.DockerBinary) with DOCKER_HOST
// set to this daemon and DOCKER_BUILDKIT=1.
//
// The daemon has no bridge network and no iptables rules: containers and
// RUN steps use `--network host` (Build's default) or `--network none`
// (a container's default here: loopback only). Registries on 127.0.0.0/8 are insecure (plain HTTP)
// by dockerd's default, so it pulls from StartRegistry's registries.
type Docker struct {
	*harness.Dockerd
}

var (
	dockerOnce sync.Once
	dockerD    *harness.Dockerd
	dockerErr  error
)

// SharedDocker returns the test process's docker daemon, started on first
// use (a few seconds) and stopped by Main when the tests end: use
// testutil.Main in TestMain. Tests share it, so use unique image names
// (per-test tags) and do not prune or stop what others use.
//
// It needs root and the docker.io package: without either the test fails
// with what to install, or is skipped under -short.
func SharedDocker(t testing.TB) *Docker {
	t.Helper()
	dockerOnce.Do(func() {
		dockerD, dockerErr = harness.StartDockerd("")
	})
	Require(t, dockerErr)
	return &Docker{dockerD}
}

// stopSharedDocker stops the shared daemon, if it was started.
func stopSharedDocker() error {
	if dockerD == nil {
		return nil
	}
	return dockerD.Close()
}

// Docker runs `docker ARGS…` and returns its standard output; a non-zero
// exit fails the test with the command, its stderr and stdout.
func (d *Docker) Docker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := d.TryDocker(context.Background(), "", args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TryDocker runs `docker ARGS…` in dir (the current directory when
// empty) and returns its standard output, or an error that holds the
// command, its exit status, stderr and stdout.
func (d *Docker) TryDocker(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := d.Command(ctx, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %v\nstderr:\n%s\nstdout:\n%s",
			strings.Join(args, " "), err, tailString(stderr.String(), 6000), tailString(stdout.String(), 2000))
	}
	return stdout.String(), nil
}

// Run runs `docker run --rm ARGS…` (ARGS: options, the image and its
// command) and returns the container's standard output. Without a bridge
// a container has only loopback unless ARGS say `--network host`.
func (d *Docker) Run(t testing.TB, args ...string) string {
	t.Helper()
	return d.Docker(t, append([]string{"run", "--rm"}, args...)...)
}

// Build runs `docker build --network host ARGS… CONTEXT` with BuildKit
// (plain progress) and returns the image ID. ARGS may hold -t, -f,
// --build-arg, --target, -o and the like (a --network replaces the
// default; with -o nothing goes to the image store and the ID is "").
func (d *Docker) Build(t testing.TB, contextDir string, args ...string) string {
	t.Helper()
	id, err := d.TryBuild(context.Background(), contextDir, args...)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TryBuild is Build returning an error (with BuildKit's log) instead of
// failing the test.
func (d *Docker) TryBuild(ctx context.Context, contextDir string, args ...string) (string, error) {
	iid, err := os.CreateTemp("", "kiln-docker-iid-")
	if err != nil {
		return "", err
	}
	iid.Close()
	defer os.Remove(iid.Name())
	full := []string{"build", "--progress=plain"}
	if !hasOutput(args) {
		// docker refuses --iidfile with an exporter that makes no image.
		full = append(full, "--iidfile", iid.Name())
	}
	full = append(full, withNetwork(args)...)
	if _, err := d.TryDocker(ctx, "", append(full, contextDir)...); err != nil {
		return "", err
	}
	b, err := os.ReadFile(iid.Name())
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// Load runs `docker load -i TARFILE` (a docker archive, e.g. kiln's
// --output type=docker) and returns docker's output ("Loaded image: …").
func (d *Docker) Load(t testing.TB, tarFile string) string {
	t.Helper()
	return d.Docker(t, "load", "-i", tarFile)
}

// Save runs `docker save -o FILE IMAGES…` into the test's temp directory
// and returns FILE.
func (d *Docker) Save(t testing.TB, images ...string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "save.tar")
	d.Docker(t, append([]string{"save", "-o", f}, images...)...)
	return f
}

// withNetwork prepends --network host unless args already choose one.
func withNetwork(args []string) []string {
	for _, a := range args {
		if a == "--network" || a == "--net" || strings.HasPrefix(a, "--network=") || strings.HasPrefix(a, "--net=") {
			return args
		}
	}
	return append([]string{"--network", "host"}, args...)
}

// hasOutput reports whether build args choose an exporter (-o, --output).
func hasOutput(args []string) bool {
	for _, a := range args {
		if a == "-o" || a == "--output" || strings.HasPrefix(a, "-o=") || strings.HasPrefix(a, "--output=") {
			return true
		}
	}
	return false
}

func tailString(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
