package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// run runs kiln in-process with a store under root.
func run(t *testing.T, root string, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := NewRootCommandIO(strings.NewReader(stdin), &out, &errb)
	cmd.SetArgs(append([]string{"--root", root}, args...))
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

var idLine = regexp.MustCompile(`^sha256:[0-9a-f]{64}\n$`)

func tarOf(t *testing.T, files map[string]string) string {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, content := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg, ModTime: time.Unix(1, 0)})
		tw.Write([]byte(content))
	}
	tw.Close()
	return b.String()
}

func TestBuildContextFromStdinTar(t *testing.T) {
	root := t.TempDir()
	ctx := tarOf(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY a.txt /a.txt\n", "a.txt": "hello"})
	iid := filepath.Join(t.TempDir(), "iid")
	out, _, err := run(t, root, ctx, "build", "-q", "--iidfile", iid, "-t", "stdin:1", "-")
	if err != nil {
		t.Fatal(err)
	}
	if !idLine.MatchString(out) {
		t.Fatalf("-q output %q, want only the image ID", out)
	}
	data, err := os.ReadFile(iid)
	if err != nil || string(data) != strings.TrimSpace(out) {
		t.Errorf("iidfile %q (%v), stdout %q", data, err, out)
	}
	out, _, err = run(t, root, "", "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
	if err != nil {
		t.Fatal(err)
	}
	if want := "stdin:1 " + strings.TrimSpace(string(data)) + "\n"; out != want {
		t.Errorf("images: %q, want %q", out, want)
	}
}

func TestBuildDockerfileFromStdin(t *testing.T) {
	root := t.TempDir()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644)
	out, errOut, err := run(t, root, "FROM scratch\nCOPY f /f\nLABEL via=stdin\n", "build", "-f", "-", "-t", "x", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !idLine.MatchString(out) {
		t.Errorf("stdout %q", out)
	}
	if !strings.Contains(errOut, "LABEL via=stdin") || !strings.Contains(errOut, "Tagged x:latest") {
		t.Errorf("progress: %q", errOut)
	}
	// A Dockerfile alone on stdin (docker build - < Dockerfile): no context.
	_, _, err = run(t, root, "FROM scratch\nCOPY f /f\n", "build", "-")
	if err == nil || !strings.Contains(err.Error(), "there is no build context") {
		t.Errorf("COPY without context: %v", err)
	}
	if _, _, err = run(t, root, "FROM scratch\nENV A=1\n", "build", "-"); err != nil {
		t.Errorf("metadata-only Dockerfile on stdin: %v", err)
	}
}

func TestDockerfileSpecificIgnore(t *testing.T) {
	root := t.TempDir()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "docker"), 0o755)
	os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(dir, "b"), []byte("b"), 0o644)
	os.WriteFile(filepath.Join(dir, ".dockerignore"), []byte("a\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "docker", "Dockerfile-build"), []byte("FROM scratch\nCOPY a /a\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "docker", "Dockerfile-build.dockerignore"), []byte("b\n"), 0o644)
	// Dockerfile-build.dockerignore wins: a is copied, b would not be.
	if _, _, err := run(t, root, "", "build", "-f", filepath.Join(dir, "docker", "Dockerfile-build"), dir); err != nil {
		t.Fatalf("a is only excluded by the context's .dockerignore: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "docker", "Dockerfile-build"), []byte("FROM scratch\nCOPY b /b\n"), 0o644)
	_, _, err := run(t, root, "", "build", "-f", filepath.Join(dir, "docker", "Dockerfile-build"), dir)
	if err == nil || !strings.Contains(err.Error(), "Dockerfile-build:2: COPY b: not found in the build context (or excluded by Dockerfile-build.dockerignore)") {
		t.Errorf("b: %v", err)
	}
}

func TestBuildFlagErrors(t *testing.T) {
	root := t.TempDir()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\n"), 0o644)
	cases := map[string][]string{
		`unknown image format "v1"`:                           {"build", "--format", "v1", dir},
		`--output "type=gha,dest=x": unknown type "gha"`:      {"build", "--output", "type=gha,dest=x", dir},
		`--output "type=oci": dest= is required`:              {"build", "--output", "type=oci", dir},
		`--output "type=local,dest=d,push=true": unknown key`: {"build", "--output", "type=local,dest=d,push=true", dir},
		`--output "type=image": type=image needs name=`:       {"build", "--output", "type=image", dir},
		`--timestamp="yesterday"`:                             {"build", "--timestamp", "yesterday", dir},
		`-t UPPER:1: invalid reference`:                       {"build", "-t", "UPPER:1", dir},
		`--platform: `:                                        {"build", "--platform", "a/b/c/d", dir},
		`no Dockerfile at`:                                    {"build", t.TempDir()},
		`unknown compression`:                                 {"build", "--compression", "lz4", dir},
	}
	for want, args := range cases {
		_, _, err := run(t, root, "", args...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: error %v, want %q", args, err, want)
		}
	}
	// Nothing was stored by the failed builds.
	out, _, err := run(t, root, "", "images", "-q")
	if err != nil || out != "" {
		t.Errorf("images after failures: %q %v", out, err)
	}
}

func TestOutputsAndTimestamp(t *testing.T) {
	root := t.TempDir()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY f /f\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "f"), []byte("content"), 0o644)
	outDir := t.TempDir()
	a, _, err := run(t, root, "", "build", "-q", "--timestamp", "1700000000", "-o", "type=oci,dest="+filepath.Join(outDir, "layout"),
		"-o", "type=oci,dest="+filepath.Join(outDir, "oci.tar"), "-o", "type=docker,dest="+filepath.Join(outDir, "docker.tar"), "-t", "out:1", dir)
	if err != nil {
		t.Fatal(err)
	}
	// A destination with a comma, CSV-quoted as with buildx.
	if _, _, err := run(t, root, "", "build", "-q", "-o", `type=oci,"dest=`+filepath.Join(outDir, "a,b.tar")+`"`, dir); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"layout/index.json", "layout/oci-layout", "oci.tar", "docker.tar", "a,b.tar"} {
		if _, err := os.Stat(filepath.Join(outDir, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	b, _, err := run(t, t.TempDir(), "", "build", "-q", dir)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Errorf("--timestamp and SOURCE_DATE_EPOCH with the same value gave %s and %s", a, b)
	}
}

// With TMPDIR unwritable (a read-only root filesystem), temp files go to
// the store: a stdin context (extracted to a temp directory) builds, and
// nothing is left in the store's tmp area afterwards.
func TestBuildTempInStoreWhenTMPDIRUnwritable(t *testing.T) {
	root := t.TempDir()
	t.Setenv("TMPDIR", filepath.Join(t.TempDir(), "missing"))
	ctx := tarOf(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY a.txt /a.txt\n", "a.txt": "hello"})
	if _, stderr, err := run(t, root, ctx, "build", "-q", "-t", "ro:1", "-"); err != nil {
		t.Fatalf("build with an unwritable TMPDIR: %v\n%s", err, stderr)
	}
	ents, err := os.ReadDir(filepath.Join(root, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("left in the store's tmp: %s", e.Name())
	}
}
