package e2e

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/kiln-build/kiln/internal/testutil"
)

// TestMultiPlatform builds one Dockerfile for linux/amd64 and linux/arm64
// on a multi-platform base in a real registry, without RUN, and checks that
// each image of the OCI output is made from its own platform's base.
func TestMultiPlatform(t *testing.T) {
	testutil.SkipIfShort(t)
	reg := testutil.StartRegistry(t)
	testutil.PushIndex(t, reg+"/multi/base:1", testutil.PlatformIndex(t))

	ctx := t.TempDir()
	writeFile(t, filepath.Join(ctx, "Dockerfile"), `ARG REGISTRY
FROM ${REGISTRY}/multi/base:1
ARG TARGETPLATFORM
ENV BUILT_FOR=${TARGETPLATFORM}
COPY hello.txt /hello.txt
`)
	writeFile(t, filepath.Join(ctx, "hello.txt"), "hello\n")
	dest := filepath.Join(t.TempDir(), "oci")
	builtID(t, kiln(t, "--root", t.TempDir(), "build", "--build-arg", "REGISTRY="+reg,
		"--platform", "linux/amd64,linux/arm64", "--output", "type=oci,dest="+dest, ctx))

	idx, err := layout.ImageIndexFromPath(dest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Errorf("OCI output is not a valid index: %v", err)
	}
	images := platformImages(t, idx)
	if len(images) != 2 {
		t.Fatalf("found %d platform images in the output, want 2: %v", len(images), keys(images))
	}
	for _, want := range []string{"linux/amd64", "linux/arm64"} {
		var img v1.Image
		for p, i := range images {
			if strings.HasPrefix(p, want) {
				img = i
			}
		}
		if img == nil {
			t.Errorf("no image for %s in %v", want, keys(images))
			continue
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Platform().String(); !strings.HasPrefix(got, want) {
			t.Errorf("%s: config platform %s", want, got)
		}
		if !slices.ContainsFunc(cfg.Config.Env, func(e string) bool { return strings.HasPrefix(e, "BUILT_FOR="+want) }) {
			t.Errorf("%s: Env %q lacks BUILT_FOR=%s (TARGETPLATFORM)", want, cfg.Config.Env, want)
		}
		if !slices.ContainsFunc(cfg.Config.Env, func(e string) bool { return strings.HasPrefix(e, "PLATFORM="+want) }) {
			t.Errorf("%s: Env %q lacks the base's PLATFORM=%s", want, cfg.Config.Env, want)
		}
		tree := testutil.ImageTree(t, img)
		base := treeField(t, tree, "/etc/platform", 5)
		if base != sha256Hex(want+"\n") && base != sha256Hex(want+"/v8\n") {
			t.Errorf("%s: /etc/platform comes from another platform's base (%s)", want, testutil.TreeEntry(tree, "/etc/platform"))
		}
		if got := treeField(t, tree, "/hello.txt", 5); got != sha256Hex("hello\n") {
			t.Errorf("%s: /hello.txt sha256 %s", want, got)
		}
	}
}

// platformImages returns the images reachable from idx (through nested
// indexes) by their platform, from the descriptor or else the config.
func platformImages(t *testing.T, idx v1.ImageIndex) map[string]v1.Image {
	t.Helper()
	out := map[string]v1.Image{}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			for p, img := range platformImages(t, child) {
				out[p] = img
			}
		case d.MediaType.IsImage() || d.MediaType == types.MediaType(""):
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			p := ""
			if d.Platform != nil {
				p = d.Platform.String()
			} else if cfg, err := img.ConfigFile(); err == nil {
				p = cfg.Platform().String()
			}
			out[p] = img
		}
	}
	return out
}

func keys(m map[string]v1.Image) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPlatformSingleBaseRefused: a single-platform base (one manifest, not
// an index) in a real registry is never built for another platform: with
// --platform of one other platform, or of two, kiln exits non-zero naming
// the platform the base has, and stores nothing; the base's own platform
// builds.
func TestPlatformSingleBaseRefused(t *testing.T) {
	testutil.SkipIfShort(t)
	reg := testutil.StartRegistry(t)
	testutil.PushImage(t, reg+"/single/base:1", testutil.BusyboxImage(t))
	ctx := t.TempDir()
	writeFile(t, filepath.Join(ctx, "Dockerfile"), "ARG REGISTRY\nFROM ${REGISTRY}/single/base:1\nCOPY hello.txt /hello.txt\n")
	writeFile(t, filepath.Join(ctx, "hello.txt"), "hello\n")
	cfg, err := testutil.BusyboxImage(t).ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	have := "linux/" + cfg.Architecture
	other := "linux/arm64"
	if cfg.Architecture == "arm64" {
		other = "linux/amd64"
	}
	root := t.TempDir()
	for _, p := range []string{other, have + "," + other} {
		r := kilnRun(t, nil, "--root", root, "build", "--build-arg", "REGISTRY="+reg, "--platform", p, "-t", "refused:1", ctx)
		if r.err == nil {
			t.Fatalf("--platform %s on a %s-only base succeeded\n%s", p, have, r)
		}
		if !strings.Contains(r.stderr, "Dockerfile:2: FROM ") || !strings.Contains(r.stderr, "is for "+have+" only") {
			t.Errorf("--platform %s: the error does not name the base's platform %s at line 2\n%s", p, have, r)
		}
	}
	if out := kiln(t, "--root", root, "images").stdout; imagesRow(out, "refused", "1") != "" {
		t.Errorf("a refused build stored an image:\n%s", out)
	}
	builtID(t, kiln(t, "--root", root, "build", "--build-arg", "REGISTRY="+reg, "--platform", have, ctx))
}

// TestPlatformArm64Run: RUN steps for linux/arm64 on another machine run
// through binfmt_misc (Debian's qemu-user-static, registered with the
// fix-binary flag; registered here as root when it is not yet): from an
// arm64-only base and from an amd64+arm64 index with --platform of both,
// `uname -m` in RUN says aarch64 for arm64 (x86_64 for amd64) and each
// config records its architecture.
func TestPlatformArm64Run(t *testing.T) {
	testutil.SkipIfShort(t)
	arm := testutil.Arm64BusyboxImage(t)
	testutil.RequireArm64Emulation(t)
	reg := testutil.StartRegistry(t)
	testutil.PushImage(t, reg+"/arm/busybox:1", arm)
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: testutil.BusyboxImage(t), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}})
	testutil.PushIndex(t, reg+"/multi/busybox:1", idx)
	unames := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}

	ctx := t.TempDir()
	writeFile(t, filepath.Join(ctx, "Dockerfile"), `ARG REGISTRY
ARG BASE
FROM ${REGISTRY}/${BASE}
ARG TARGETPLATFORM
RUN uname -m > /arch && echo "$TARGETPLATFORM" > /target
`)
	for _, c := range []struct{ base, platforms string }{
		{"arm/busybox:1", "linux/arm64"},
		{"multi/busybox:1", "linux/" + runtime.GOARCH + ",linux/arm64"},
	} {
		// A store each: the arm64 step would be a cache hit the second time.
		dest := filepath.Join(t.TempDir(), "oci")
		r := kiln(t, "--root", t.TempDir(), "build", "--build-arg", "REGISTRY="+reg, "--build-arg", "BASE="+c.base,
			"--platform", c.platforms, "--output", "type=oci,dest="+dest, ctx)
		if !strings.Contains(r.stderr, "RUN for linux/arm64 runs through binfmt_misc handler") {
			t.Errorf("%s: the log does not name the emulator:\n%s", c.base, r.stderr)
		}
		index, err := layout.ImageIndexFromPath(dest)
		if err != nil {
			t.Fatal(err)
		}
		images := platformImages(t, index)
		if n := len(strings.Split(c.platforms, ",")); len(images) != n {
			t.Fatalf("%s: %d images in the output (%v), want %d", c.base, len(images), keys(images), n)
		}
		for p, img := range images {
			cfg, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			arch := cfg.Architecture
			if !strings.HasPrefix(p, "linux/"+arch) || unames[arch] == "" {
				t.Errorf("%s: image %s has config architecture %q", c.base, p, arch)
				continue
			}
			tree := testutil.ImageTree(t, img)
			if got := treeField(t, tree, "/arch", 5); got != sha256Hex(unames[arch]+"\n") {
				t.Errorf("%s: %s: RUN's uname -m is not %s (%s)", c.base, p, unames[arch], testutil.TreeEntry(tree, "/arch"))
			}
			if got := treeField(t, tree, "/target", 5); got != sha256Hex("linux/"+arch+"\n") {
				t.Errorf("%s: %s: TARGETPLATFORM is not linux/%s (%s)", c.base, p, arch, testutil.TreeEntry(tree, "/target"))
			}
		}
	}
}
