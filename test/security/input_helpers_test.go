package security

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/store"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// kilnTimeout bounds one kiln command.
const kilnTimeout = 5 * time.Minute

// result is the outcome of one kiln command.
type result struct {
	args           []string
	stdout, stderr string
	err            error
}

func (r result) String() string {
	return "kiln " + strings.Join(r.args, " ") + "\n--- stdout:\n" + r.stdout + "--- stderr:\n" + r.stderr
}

// kilnRun runs the kiln binary with args (stdin from stdin if not nil) and
// extra environment env, and returns what happened without judging it.
func kilnRun(t *testing.T, stdin io.Reader, env []string, args ...string) result {
	t.Helper()
	return kilnRunTimeout(t, kilnTimeout, stdin, env, args...)
}

// kilnRunTimeout is kilnRun with another bound on the command's time (a
// hang detector, not a speed target).
func kilnRunTimeout(t *testing.T, timeout time.Duration, stdin io.Reader, env []string, args ...string) result {
	t.Helper()
	bin := testutil.KilnBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Stdin = stdin
	cmd.Env = append(os.Environ(), env...)
	err := cmd.Run()
	if ctx.Err() != nil {
		err = errors.Join(err, errors.New("timed out after "+timeout.String()))
	}
	return result{args: args, stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// mustFail checks that r failed and that its stderr has every one of want.
func mustFail(t *testing.T, r result, want ...string) {
	t.Helper()
	if r.err == nil {
		t.Fatalf("kiln succeeded, want a failure\n%s", r)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr does not say %q\n%s", w, r)
		}
	}
}

// writeFiles writes name -> content under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func sha256Sum(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}

// imageFile returns the content of file p (relative to /) of the image the
// store at root holds as ref (an exact stored name, or an image ID).
func imageFile(t *testing.T, root, ref, p string) string {
	t.Helper()
	st, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	d, err := st.Resolve(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := st.Image(d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var openers []archive.Opener
	for _, l := range layers {
		openers = append(openers, l.Uncompressed)
	}
	_, data, found, err := archive.FindFile(openers, "/"+p, 1<<20)
	if err != nil || !found {
		t.Fatalf("image %s: /%s: found %v, %v", ref, p, found, err)
	}
	return string(data)
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
