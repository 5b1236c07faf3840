package security

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/pkg/sandbox"
)

// TestStoreFullDuringLayer (finding 11): a store that fills up while a
// RUN step's layer is written (a 24 MiB tmpfs as the store, 13 MB of
// random bytes from the step) fails the build with an error that names
// the step and says "no space left on device", in every mode, never "the
// root sandbox helper failed (exit status 2)" or a broken pipe; and the
// store still opens afterwards.
func TestStoreFullDuringLayer(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs as the store needs root (CI runs this as root)")
	}
	eachSandboxMode(t, func(t *testing.T, sb *sandbox.Sandbox, flags []string) {
		mnt := filepath.Join(t.TempDir(), "small")
		if err := os.Mkdir(mnt, 0o700); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt).CombinedOutput(); err != nil {
			t.Fatalf("mount tmpfs: %v %s", err, out)
		}
		root := filepath.Join(mnt, "store")
		t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
		flags = append([]string{}, flags...)
		flags[1] = root
		r := buildDockerfile(t, flags, "full:1", "FROM {{BASE}}\nRUN head -c 13000000 /dev/urandom > /big\n")
		mustFail(t, r, "Dockerfile:2", "RUN", "no space left on device")
		for _, bad := range []string{"sandbox helper failed", "broken pipe"} {
			if strings.Contains(r.stderr, bad) {
				t.Errorf("the error says %q\n%s", bad, r)
			}
		}
		if r := kilnRun(t, nil, nil, "--root", root, "images"); r.err != nil {
			t.Errorf("the store after a full disk: %v\n%s", r.err, r)
		}
	})
}
