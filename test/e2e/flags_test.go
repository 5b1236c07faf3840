package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/internal/testutil"
)

// flagsDockerfile has two stages so that --target matters, and uses build
// arguments and labels.
const flagsDockerfile = `FROM scratch AS first
ARG FROM_ENV
ARG GIVEN=default
ENV FROM_ENV=${FROM_ENV} GIVEN=${GIVEN}
COPY a.txt /a.txt
LABEL stage=first

FROM scratch AS second
COPY b.txt /b.txt
LABEL stage=second
`

func flagsContext(t *testing.T) string {
	t.Helper()
	ctx := t.TempDir()
	writeFile(t, filepath.Join(ctx, "build.Dockerfile"), flagsDockerfile)
	writeFile(t, filepath.Join(ctx, "a.txt"), "a\n")
	writeFile(t, filepath.Join(ctx, "b.txt"), "b\n")
	return ctx
}

// TestBuildFlags checks the build flags CI scripts use: -f PATH, -f -,
// --target, --build-arg K=V and K (from the environment), --label,
// SOURCE_DATE_EPOCH, --format docker and --compression zstd.
func TestBuildFlags(t *testing.T) {
	testutil.SkipIfShort(t)
	ctx := flagsContext(t)

	t.Run("target-buildargs-labels", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "oci")
		t.Setenv("FROM_ENV", "from-the-environment")
		kiln(t, "--root", t.TempDir(), "build", "-f", filepath.Join(ctx, "build.Dockerfile"),
			"--target", "first", "--build-arg", "FROM_ENV", "--build-arg", "GIVEN=given",
			"--label", "ci.pipeline=42", "--output", "type=oci,dest="+dest, ctx)
		img := ociImage(t, dest)
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range []string{"FROM_ENV=from-the-environment", "GIVEN=given"} {
			if !slices.Contains(cfg.Config.Env, e) {
				t.Errorf("Env %q lacks %q", cfg.Config.Env, e)
			}
		}
		if got := cfg.Config.Labels; got["stage"] != "first" || got["ci.pipeline"] != "42" {
			t.Errorf("Labels %v, want stage=first (--target first) and ci.pipeline=42 (--label)", got)
		}
		tree := testutil.ImageTree(t, img)
		treeField(t, tree, "/a.txt", 1)
		if l := testutil.TreeEntry(tree, "/b.txt"); l != "" {
			t.Errorf("--target first built the second stage too: %s", l)
		}
	})

	t.Run("stdin-dockerfile-source-date-epoch", func(t *testing.T) {
		const epoch = 1700000000
		dest := filepath.Join(t.TempDir(), "oci")
		t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
		f, err := os.Open(filepath.Join(ctx, "build.Dockerfile"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		r := kilnRun(t, f, "--root", t.TempDir(), "build", "-f", "-", "--output", "type=oci,dest="+dest, ctx)
		if r.err != nil {
			t.Fatalf("%v\n%s", r.err, r)
		}
		img := ociImage(t, dest)
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Config.Labels["stage"] != "second" {
			t.Errorf("Labels %v: without --target the last stage is built", cfg.Config.Labels)
		}
		if !cfg.Created.Time.Equal(time.Unix(epoch, 0)) {
			t.Errorf("created %s, want SOURCE_DATE_EPOCH %s", cfg.Created.Time.UTC(), time.Unix(epoch, 0).UTC())
		}
	})

	t.Run("docker-format-zstd", func(t *testing.T) {
		for _, c := range []struct {
			args          []string
			manifest      types.MediaType
			layerContains string
		}{
			{[]string{"--format", "docker"}, types.DockerManifestSchema2, "docker.image.rootfs.diff.tar.gzip"},
			{[]string{"--compression", "zstd"}, types.OCIManifestSchema1, "tar+zstd"},
		} {
			dest := filepath.Join(t.TempDir(), "oci")
			args := append([]string{"--root", t.TempDir(), "build", "-f", filepath.Join(ctx, "build.Dockerfile")}, c.args...)
			kiln(t, append(args, "--output", "type=oci,dest="+dest, ctx)...)
			img := ociImage(t, dest)
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if m.MediaType != c.manifest {
				t.Errorf("%v: manifest media type %s, want %s", c.args, m.MediaType, c.manifest)
			}
			for _, l := range m.Layers {
				if !strings.Contains(string(l.MediaType), c.layerContains) {
					t.Errorf("%v: layer media type %s, want one with %q", c.args, l.MediaType, c.layerContains)
				}
			}
			if got := treeField(t, testutil.ImageTree(t, img), "/b.txt", 5); got != sha256Hex("b\n") {
				t.Errorf("%v: /b.txt sha256 %s", c.args, got)
			}
		}
	})
}
