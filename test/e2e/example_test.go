package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/kiln-build/kiln/internal/testutil"
)

// helloDir is the bundled example, relative to the checkout.
const helloDir = "examples/hello"

// TestExampleHello builds the bundled example as the README's first
// command does (no registry involved) and checks `kiln images` and the image.
func TestExampleHello(t *testing.T) {
	testutil.SkipIfShort(t)
	root := t.TempDir()
	id := builtID(t, kiln(t, "--root", root, "build", "-t", "hello:latest", helloDir))
	out := kiln(t, "--root", root, "images").stdout
	row := imagesRow(out, "hello", "latest")
	if row == "" {
		t.Fatalf("kiln images does not list hello:latest:\n%s", out)
	}
	if short := id[len("sha256:"):][:12]; !strings.Contains(row, short) {
		t.Errorf("kiln images row %q does not show the image ID %s", row, short)
	}

	// -q: the image ID is the only output.
	if q := kiln(t, "--root", root, "build", "-q", "-t", "hello:quiet", helloDir); !imageID.MatchString(strings.TrimSuffix(q.stdout, "\n")) {
		t.Errorf("build -q printed %q, want only an image ID", q.stdout)
	}

	dest := filepath.Join(t.TempDir(), "oci")
	builtID(t, kiln(t, "--root", root, "build", "--output", "type=oci,dest="+dest, helloDir))
	img := ociImage(t, dest)
	checkHello(t, img)
}

// TestExampleHelloReproducible: with --timestamp, two builds in two fresh
// stores give the same image ID, and the config says that time.
func TestExampleHelloReproducible(t *testing.T) {
	testutil.SkipIfShort(t)
	const ts = 1704067200 // 2024-01-01T00:00:00Z
	a := builtID(t, kiln(t, "--root", t.TempDir(), "build", "--timestamp", "1704067200", helloDir))
	b := builtID(t, kiln(t, "--root", t.TempDir(), "build", "--timestamp", "1704067200", helloDir))
	if a != b {
		t.Errorf("two builds with --timestamp gave %s and %s", a, b)
	}
	dest := filepath.Join(t.TempDir(), "oci")
	kiln(t, "--root", t.TempDir(), "build", "--timestamp", "1704067200", "--output", "type=oci,dest="+dest, helloDir)
	cfg, err := ociImage(t, dest).ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Created.Time.Equal(time.Unix(ts, 0)) {
		t.Errorf("config created %s, want %s", cfg.Created.Time.UTC(), time.Unix(ts, 0).UTC())
	}
}

// TestExampleHelloFromStdin builds the example from a tar stream on stdin
// (CONTEXT "-") and finds the same files.
func TestExampleHelloFromStdin(t *testing.T) {
	testutil.SkipIfShort(t)
	tarball := filepath.Join(t.TempDir(), "ctx.tar")
	if out, err := exec.Command("tar", "-C", filepath.Join(moduleRoot(t), helloDir), "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dest := filepath.Join(t.TempDir(), "oci")
	r := kilnRun(t, f, "--root", t.TempDir(), "build", "--output", "type=oci,dest="+dest, "-")
	if r.err != nil {
		t.Fatalf("%v\n%s", r.err, r)
	}
	builtID(t, r)
	checkHello(t, ociImage(t, dest))
}

// checkHello checks the files and config of the example's image.
func checkHello(t *testing.T, img v1.Image) {
	t.Helper()
	if err := validate.Image(img); err != nil {
		t.Errorf("image is not valid: %v", err)
	}
	tree := testutil.ImageTree(t, img)
	src := filepath.Join(moduleRoot(t), helloDir)
	for _, p := range []string{"hello.txt", "site/index.html", "site/css/style.css"} {
		in := "/srv/" + p
		if got, want := treeField(t, tree, in, 5), fileSHA256(t, filepath.Join(src, p)); got != want {
			t.Errorf("%s: content sha256 %s, want %s (of %s)", in, got, want, p)
		}
		if owner := treeField(t, tree, in, 3); owner != "0:0" {
			t.Errorf("%s owned by %s, want 0:0", in, owner)
		}
	}
	for _, p := range []string{"/srv/Dockerfile", "/srv/README.md", "/srv/site/site"} {
		if l := testutil.TreeEntry(tree, p); l != "" {
			t.Errorf("unexpected entry %s", l)
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Config
	for _, e := range []string{"GREETING=hello from kiln", "SITE_ROOT=/srv/site"} {
		if !slices.Contains(c.Env, e) {
			t.Errorf("Env %q lacks %q", c.Env, e)
		}
	}
	if c.WorkingDir != "/srv" {
		t.Errorf("WorkingDir %q, want /srv", c.WorkingDir)
	}
	if !slices.Equal(c.Cmd, []string{"/srv/hello.txt"}) {
		t.Errorf("Cmd %q", c.Cmd)
	}
	if c.Labels["org.opencontainers.image.title"] != "hello" {
		t.Errorf("Labels %v lack org.opencontainers.image.title=hello", c.Labels)
	}
}

// ociImage reads the one image of an OCI layout written by kiln.
func ociImage(t *testing.T, dir string) v1.Image {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("read OCI layout %s: %v", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) == 0 {
		t.Fatalf("%s/index.json lists no manifests", dir)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
