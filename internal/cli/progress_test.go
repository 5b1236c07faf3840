package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/progress"
	"golang.org/x/sys/unix"
)

// progressContext is a small context whose build has the step events that
// need no sandbox: FROM, COPY, metadata. One stage, so that the order of
// events is fixed.
func progressContext(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"Dockerfile": "FROM scratch\nCOPY a.txt /a.txt\nENV A=1\nLABEL l=v\n",
		"a.txt":      "hello\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var (
	goldenDigest  = regexp.MustCompile(`sha256:[0-9a-f]{64}`)
	goldenSeconds = regexp.MustCompile(`\b\d+\.\ds\b`)
)

// normalize replaces what changes from run to run (digests, durations).
func normalize(s string) string {
	s = goldenDigest.ReplaceAllString(s, "sha256:DIGEST")
	return goldenSeconds.ReplaceAllString(s, "N.Ns")
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if testutil.Updating() { // go test -update
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./internal/cli -run %s -update writes it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file %s:\n--- got\n%s--- want\n%s", t.Name(), path, got, want)
	}
}

// TestProgressPlainGolden: the plain stream of a build (every step with
// DONE or CACHED, notes, the summary), with digests and durations
// normalized.
func TestProgressPlainGolden(t *testing.T) {
	root, dir := t.TempDir(), progressContext(t)
	_, first, err := run(t, root, "", "build", "--progress=plain", "-t", "golden:1", dir)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "progress-plain.golden", normalize(first))
}

// TestProgressJSONGolden: in JSON mode stderr holds only events, one
// object per line; their stable fields (everything but times and
// durations) match the golden file.
func TestProgressJSONGolden(t *testing.T) {
	root, dir := t.TempDir(), progressContext(t)
	out, stderr, err := run(t, root, "", "build", "--progress=json", "-t", "golden:1", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !idLine.MatchString(out) {
		t.Errorf("stdout %q, want the image ID", out)
	}
	var stable bytes.Buffer
	for _, line := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		var e progress.Event
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("stderr line is not an event: %q (%v)", line, err)
		}
		if e.Time.IsZero() {
			t.Errorf("event without a time: %q", line)
		}
		e.Time, e.Duration, e.Offset = time.Time{}, 0, 0
		b, _ := json.Marshal(e)
		stable.Write(b)
		stable.WriteByte('\n')
	}
	checkGolden(t, "progress-json.golden", normalize(stable.String()))
}

// TestProgressQuiet: --progress=quiet prints nothing but the image ID.
func TestProgressQuiet(t *testing.T) {
	root, dir := t.TempDir(), progressContext(t)
	out, stderr, err := run(t, root, "", "build", "--progress=quiet", "-t", "golden:1", dir)
	if err != nil || stderr != "" || !idLine.MatchString(out) {
		t.Errorf("quiet build: stdout %q, stderr %q, %v", out, stderr, err)
	}
}

// TestProgressTTY: on a pseudo-terminal the build draws the live view:
// "=> [step] instruction  N.Ns" lines redrawn in place.
func TestProgressTTY(t *testing.T) {
	ptm, pts := openPTY(t)
	root, dir := t.TempDir(), progressContext(t)
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := ptm.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	var stdout bytes.Buffer
	cmd := NewRootCommandIO(strings.NewReader(""), &stdout, pts)
	cmd.SetArgs([]string{"--root", root, "build", "-t", "tty:1", dir})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	pts.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the terminal output did not end")
	}
	got := out.String()
	for _, want := range []string{"=> [stage-0 2/4] COPY a.txt /a.txt", "=> [stage-0 3/4] ENV A=1", "\x1b[2K", "built sha256:"} {
		if !strings.Contains(got, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, got)
		}
	}
	if strings.Contains(got, "DONE ") {
		t.Errorf("the terminal view printed plain DONE lines:\n%q", got)
	}
}

// openPTY opens a pseudo-terminal pair 100 columns wide.
func openPTY(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptm.Close() })
	fd := int(ptm.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pts.Close() })
	if err := unix.IoctlSetWinsize(int(pts.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: 100}); err != nil {
		t.Fatal(err)
	}
	return ptm, pts
}

// TestProgressBaseNotPinnedNote: a base named by tag gets the note that it
// is not pinned once per base, however many stages and platforms start
// from it; a base pinned by digest gets none; under --progress=quiet
// stderr is empty.
func TestProgressBaseNotPinnedNote(t *testing.T) {
	isolateAuth(t)
	reg := startRegistry(t)
	base, other := reg.host+"/library/base:1", reg.host+"/library/other:1"
	testutil.PushIndex(t, base, testutil.PlatformIndex(t))
	testutil.PushIndex(t, other, testutil.PlatformIndex(t))
	pinned := reg.host + "/library/other@" + reg.remoteDigest(t, "library/other:1")
	dir := t.TempDir()
	df := "FROM " + base + " AS a\nLABEL s=a\n" +
		"FROM " + pinned + " AS p\nLABEL s=p\n" +
		"FROM " + base + "\nCOPY --from=a /none* /a/\nCOPY --from=p /none* /p/\nLABEL s=final\n"
	testutil.Require(t, os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644))
	args := []string{"build", "--platform", "linux/amd64,linux/arm64", "-t", "pin:1", dir}

	_, stderr, err := run(t, t.TempDir(), "", append([]string{"--progress=plain"}, args...)...)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, stderr)
	}
	if n := strings.Count(stderr, "note: "+base+" is not pinned to a digest"); n != 1 {
		t.Errorf("the note for %s %d times, want once:\n%s", base, n, stderr)
	}
	if n := strings.Count(stderr, "is not pinned"); n != 1 {
		t.Errorf("%d notes, want only %s's (the other base is pinned by digest):\n%s", n, base, stderr)
	}

	out, stderr, err := run(t, t.TempDir(), "", append([]string{"--progress=quiet"}, args...)...)
	if err != nil || stderr != "" || !idLine.MatchString(out) {
		t.Errorf("quiet build: stdout %q, stderr %q, %v", out, stderr, err)
	}
}
