package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testutil"
)

// A docker archive that kiln writes is one podman loads: base layers kiln
// never downloaded during the build are fetched into the archive, and the
// image keeps its names and layers.
func TestDockerArchiveLoadsInPodman(t *testing.T) {
	testutil.SkipIfShort(t)
	testutil.RequireProgram(t, "/usr/bin/podman", "podman")
	reg := testutil.StartRegistry(t)
	testutil.PushImage(t, reg+"/library/busybox:latest", testutil.BusyboxImage(t))

	tmp := t.TempDir()
	ctx := filepath.Join(tmp, "ctx")
	if err := os.MkdirAll(ctx, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM "+reg+"/library/busybox\nWORKDIR /app\nCOPY hello.txt ./\nCMD [\"cat\", \"/app/hello.txt\"]\n"), 0o644)
	os.WriteFile(filepath.Join(ctx, "hello.txt"), []byte("hello from kiln\n"), 0o644)
	archive := filepath.Join(tmp, "app.tar")
	builtID(t, kiln(t, "--root", filepath.Join(tmp, "store"), "build", "-t", "kiln-e2e/app:1", "--output", "type=docker,dest="+archive, ctx))

	// podman wants a short run root (< 50 characters).
	pm, err := os.MkdirTemp("/tmp", "kpm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pm) })
	podman := func(args ...string) string {
		t.Helper()
		all := append([]string{"--root", filepath.Join(pm, "root"), "--runroot", filepath.Join(pm, "run"), "--storage-driver", "vfs"}, args...)
		out, err := exec.Command("podman", all...).CombinedOutput()
		if err != nil {
			t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := podman("load", "-i", archive)
	// podman qualifies the short name its own way (localhost/ or docker.io/).
	var name string
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, "Loaded image"); i >= 0 && strings.HasSuffix(l, "/kiln-e2e/app:1") {
			name = l[strings.LastIndex(l, " ")+1:]
		}
	}
	if name == "" {
		t.Fatalf("podman load did not name kiln-e2e/app:1:\n%s", out)
	}
	var inspect []struct {
		RootFS struct{ Layers []string }
		Config struct{ Cmd []string }
	}
	if err := json.Unmarshal([]byte(podman("image", "inspect", name)), &inspect); err != nil {
		t.Fatal(err)
	}
	if len(inspect) != 1 || len(inspect[0].RootFS.Layers) != 3 {
		t.Fatalf("podman image inspect: %+v, want 3 layers (busybox, WORKDIR, COPY)", inspect)
	}
	if got := strings.Join(inspect[0].Config.Cmd, " "); got != "cat /app/hello.txt" {
		t.Errorf("Cmd %q", got)
	}
}
