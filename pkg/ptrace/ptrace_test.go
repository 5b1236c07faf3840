package ptrace

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/kiln-build/kiln/internal/testutil"
)

// rootOf extracts img into a new directory with Table.Apply and returns
// the directory and its table file.
func rootOf(t *testing.T, img v1.Image) (string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tab := NewTable()
	if _, err := tab.Apply(dir, rc); err != nil {
		t.Fatal(err)
	}
	file := TableFile(dir)
	if err := tab.Save(file); err != nil {
		t.Fatal(err)
	}
	return dir, file
}

var (
	bbOnce sync.Once
	bbImg  v1.Image
)

// run runs sh -c script in root and returns its output and exit code.
func run(t *testing.T, root, table, script string, binds ...Bind) (string, int) {
	t.Helper()
	var out bytes.Buffer
	res, err := Run(context.Background(), Config{
		Root: root, Table: table, Binds: binds,
		Args: []string{"/bin/sh", "-c", script},
		Env:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"},
		Cwd:  "/",
	}, Options{Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out.String())
	}
	return out.String(), res.Exit
}

func TestBusyboxShell(t *testing.T) {
	root, table := rootOf(t, testutil.BusyboxImage(t))
	out, code := run(t, root, table, `set -e; echo hi; cd /tmp; pwd; id; ls -ln / | head -3; readlink /proc/self/exe; cat /etc/passwd | head -1; for i in 1 2 3; do echo $i > /tmp/f$i; done; ls /tmp`)
	t.Log(out)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(out, "uid=0(root)") {
		t.Errorf("id does not say root: %s", out)
	}
}
