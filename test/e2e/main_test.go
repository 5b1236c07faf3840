package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/internal/testutil/harness"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// kilnTimeout bounds one kiln command.
const kilnTimeout = 5 * time.Minute

// imageID is what `kiln build` prints last on stdout.
var imageID = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// TestPrerequisites fails, naming the Debian packages to install, when a
// program the end-to-end tests need is missing.
func TestPrerequisites(t *testing.T) {
	testutil.SkipIfShort(t)
	var missing []string
	for _, err := range []error{
		harness.NeedExecutable(harness.RegistryBinary, harness.RegistryPackage),
		harness.NeedExecutable("/usr/bin/skopeo", "skopeo"),
		harness.CheckBusybox(),
		harness.NeedExecutable(harness.MmdebstrapPath, "mmdebstrap"),
		harness.NeedExecutable("/usr/bin/openssl", "openssl"),
	} {
		if err != nil {
			missing = append(missing, err.Error())
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing prerequisites (run `sudo .ci/deps`):\n%s", strings.Join(missing, "\n"))
	}
}

// run is the outcome of one kiln command.
type run struct {
	args           []string
	stdout, stderr string
	err            error
}

func (r run) String() string {
	return "kiln " + strings.Join(r.args, " ") + "\n--- stdout:\n" + r.stdout + "--- stderr:\n" + r.stderr
}

// kilnRun runs the kiln binary with args (stdin from stdin if not nil) and
// returns what happened, without judging it.
func kilnRun(t *testing.T, stdin io.Reader, args ...string) run {
	t.Helper()
	bin := testutil.KilnBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), kilnTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Stdin = stdin
	cmd.Dir = moduleRoot(t)
	err := cmd.Run()
	if ctx.Err() != nil {
		err = errors.Join(err, errors.New("timed out after "+kilnTimeout.String()))
	}
	return run{args: args, stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// kiln runs the kiln binary and fails the test if it does not exit 0.
func kiln(t *testing.T, args ...string) run {
	t.Helper()
	r := kilnRun(t, nil, args...)
	if r.err != nil {
		t.Fatalf("%v\n%s", r.err, r)
	}
	return r
}

// builtID returns the image ID that a build printed as its last stdout
// line, failing the test if there is none.
func builtID(t *testing.T, r run) string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	if !imageID.MatchString(last) {
		t.Fatalf("last stdout line %q is not an image ID sha256:<64 hex>\n%s", last, r)
	}
	return last
}

// imagesRow returns the line of `kiln images` output that lists repo (full
// names are normalised, so "app" matches "localhost/app" and
// "docker.io/library/app") with tag, or "".
func imagesRow(out, repo, tag string) string {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[1] != tag {
			continue
		}
		if f[0] == repo || strings.HasSuffix(f[0], "/"+repo) {
			return l
		}
	}
	return ""
}

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// moduleRoot is the checkout's top directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	rootOnce.Do(func() { rootDir, rootErr = testutil.ModuleRoot() })
	if rootErr != nil {
		t.Fatal(rootErr)
	}
	return rootDir
}

// fileSHA256 returns the hex SHA-256 of a file's content.
func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// treeField returns field i (0 = path, 1 = type, 2 = mode, 3 = uid:gid,
// 4 = size, 5 = sha256, 6 = link) of the ImageTree line for p, failing the
// test if the image has no such entry.
func treeField(t *testing.T, tree []string, p string, i int) string {
	t.Helper()
	l := testutil.TreeEntry(tree, p)
	if l == "" {
		t.Fatalf("image has no %s (%d entries)", p, len(tree))
	}
	f := strings.Fields(l)
	if i >= len(f) {
		t.Fatalf("tree line %q has no field %d", l, i)
	}
	return f[i]
}

// workload returns the absolute path of testdata/workloads/NAME after
// running its gen (under a lock: gen rewrites the directory).
func workload(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(moduleRoot(t), "testdata", "workloads", name)
	testutil.RequireProgram(t, "/usr/bin/openssl", "openssl")
	unlock, err := harness.Lock(filepath.Join(os.TempDir(), "kiln-workload-"+name+".lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	start := time.Now()
	out, err := exec.Command(filepath.Join(dir, "gen")).CombinedOutput()
	if err != nil {
		t.Fatalf("%s/gen: %v\n%s", dir, err, out)
	}
	if d := time.Since(start); d > time.Second {
		t.Logf("%s/gen took %s", name, d.Round(time.Millisecond))
	}
	return dir
}

// sha256Hex returns the hex SHA-256 of s.
func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
