package security

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kiln-build/kiln/pkg/sandbox"
)

// TestSandboxKeepsHostMounts: a RUN step's network (slirp4netns, whose
// sandbox detaches its old root) and its mounts never reach the host's
// mount namespace: a shared mount on the host (as a container runtime's
// data root is) keeps its submounts through builds in every mode. Before,
// slirp4netns run as root in the host's namespace unmounted them, and a
// docker daemon on the same machine lost its containers' roots.
func TestSandboxKeepsHostMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a shared mount on the host")
	}
	shared := filepath.Join(t.TempDir(), "shared")
	sub := filepath.Join(shared, "sub")
	if err := os.MkdirAll(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--bind", shared, shared}, {"--make-shared", shared}} {
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			t.Fatalf("mount %v: %v\n%s", args, err, out)
		}
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-R", shared).Run() })
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", sub).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	marker := filepath.Join(sub, "marker")
	if err := os.WriteFile(marker, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	eachSandboxMode(t, func(t *testing.T, sb *sandbox.Sandbox, flags []string) {
		ctx := t.TempDir()
		writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM " + busyboxRef(t) + "\nRUN echo step > /step\n"})
		r := kilnRun(t, nil, nil, append(append([]string{}, flags...), "build", "--no-cache", ctx)...)
		if r.err != nil {
			t.Fatalf("%v\n%s", r.err, r)
		}
		if _, err := os.Stat(marker); err != nil {
			t.Fatalf("after a %s-mode build the host's shared mount lost its submount: %v", sb.Mode(), err)
		}
	})
}
