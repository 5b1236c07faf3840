package build_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/build"
	"github.com/kiln-build/kiln/pkg/oci"
	"github.com/kiln-build/kiln/pkg/store"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// env is a registry holding the test base images (behind a proxy that
// counts blob bytes) and a store.
type env struct {
	reg    string // host:port of the counting proxy
	counts *testutil.Counts
	store  *store.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	backend := testutil.StartInProcessRegistry(t)
	testutil.PushImage(t, backend+"/library/busybox:latest", testutil.BusyboxImage(t))
	testutil.PushIndex(t, backend+"/library/multi:latest", testutil.PlatformIndex(t))
	addr, counts := testutil.CountingProxy(t, backend)
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &env{reg: addr, counts: counts, store: st}
}

// file is a context entry: content, or a symlink target with link set.
type file struct {
	content string
	mode    os.FileMode
	link    string
	dir     bool
}

func writeContext(t *testing.T, files map[string]file) string {
	t.Helper()
	dir := t.TempDir()
	mtime := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for name, f := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case f.link != "":
			if err := os.Symlink(f.link, p); err != nil {
				t.Fatal(err)
			}
			continue
		case f.dir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			if f.mode != 0 {
				defer os.Chmod(p, f.mode) // after the files below it
			}
		default:
			mode := f.mode
			if mode == 0 {
				mode = 0o644
			}
			if err := os.WriteFile(p, []byte(f.content), mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Fixed mtimes so that golden trees are stable.
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeSymlink == 0 {
			os.Chtimes(p, mtime, mtime)
		}
		return nil
	})
	return dir
}

// build runs a build of dockerfile ({{REG}} is the test registry) over a
// context made of files.
func (e *env) build(t *testing.T, dockerfile string, files map[string]file, mod ...func(*build.Options)) (*build.Result, error) {
	t.Helper()
	ts := time.Unix(1700000000, 0).UTC()
	opts := build.Options{
		ContextDir:     writeContext(t, files),
		Dockerfile:     []byte(strings.ReplaceAll(dockerfile, "{{REG}}", e.reg)),
		DockerfileName: "Dockerfile",
		Store:          e.store,
		Timestamp:      &ts,
		Log:            io.Discard,
	}
	if testing.Verbose() {
		opts.Log = os.Stderr
	}
	for _, m := range mod {
		m(&opts)
	}
	return build.Build(context.Background(), opts)
}

func (e *env) mustBuild(t *testing.T, dockerfile string, files map[string]file, mod ...func(*build.Options)) v1.Image {
	t.Helper()
	res, err := e.build(t, dockerfile, files, mod...)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return resImage(t, res)
}

// resImage is the image a single-platform build gave.
func resImage(t *testing.T, res *build.Result) v1.Image {
	t.Helper()
	img, ok := oci.AsImage(res.Artifact)
	if !ok {
		t.Fatal("build gave no image")
	}
	return img
}

// resIndex is the index a multi-platform build gave.
func resIndex(t *testing.T, res *build.Result) v1.ImageIndex {
	t.Helper()
	idx, ok := oci.AsIndex(res.Artifact)
	if !ok {
		t.Fatal("no index")
	}
	return idx
}

// newLayers lists the entries of the layers above the first skip layers,
// each prefixed with its layer number.
func newLayers(t *testing.T, img v1.Image, skip int) []string {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i, l := range layers[skip:] {
		for _, line := range testutil.LayerTree(t, l) {
			out = append(out, "L"+strconv.Itoa(i+skip)+" "+line)
		}
	}
	return out
}

// baseLayerBytes is how many bytes of base's layer blobs went through the
// registry proxy.
func (e *env) baseLayerBytes(t *testing.T, base v1.Image) int64 {
	t.Helper()
	layers, err := base.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		n += e.counts.BlobBytes(d.String())
	}
	return n
}
