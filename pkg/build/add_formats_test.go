package build_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testutil"
)

// ADD extracts local tars whatever their compression; other files are
// copied as they are.
func TestAddExtractsEveryCompression(t *testing.T) {
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "pkg"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "pkg", "data.txt"), []byte("payload\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	files := map[string]file{}
	for _, c := range []struct{ name, flag string }{
		{"a.tar", ""}, {"a.tar.gz", "-z"}, {"a.tar.bz2", "-j"}, {"a.tar.xz", "-J"}, {"a.tar.zst", "--zstd"},
	} {
		out := filepath.Join(t.TempDir(), c.name)
		args := []string{"-c", "-f", out, "-C", src, "--owner=0", "--group=0", "pkg"}
		if c.flag != "" {
			args = append([]string{c.flag}, args...)
		}
		if msg, err := exec.Command("tar", args...).CombinedOutput(); err != nil {
			t.Fatalf("tar %s (install tar, gzip, bzip2, xz-utils and zstd: sudo .ci/deps): %v\n%s", c.name, err, msg)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		files[c.name] = file{content: string(data)}
	}
	files["not-a-tar.gz"] = file{content: "\x1f\x8bnot really gzip"}
	e := newEnv(t)
	img := e.mustBuild(t, `FROM scratch
ADD a.tar /plain/
ADD a.tar.gz /gz/
ADD a.tar.bz2 /bz2/
ADD a.tar.xz /xz/
ADD a.tar.zst /zst/
ADD --unpack=false a.tar.gz /kept/
ADD not-a-tar.gz /raw/
`, files)
	tree := testutil.ImageTree(t, img)
	for _, dir := range []string{"plain", "gz", "bz2", "xz", "zst"} {
		got := testutil.TreeEntry(tree, "/"+dir+"/pkg/data.txt")
		if !strings.Contains(got, " file 0640 0:0 8 ") {
			t.Errorf("%s: %q", dir, got)
		}
	}
	if testutil.TreeEntry(tree, "/kept/a.tar.gz") == "" {
		t.Errorf("--unpack=false extracted the archive: %v", tree)
	}
	if testutil.TreeEntry(tree, "/raw/not-a-tar.gz") == "" {
		t.Errorf("a file that is not a tar was not copied as is: %v", tree)
	}
}
