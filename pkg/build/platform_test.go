package build_test

import (
	"bytes"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/internal/testutil/harness"
	"github.com/kiln-build/kiln/pkg/build"
	plat "github.com/kiln-build/kiln/pkg/platform"
)

func platforms(ps ...string) func(*build.Options) {
	return func(o *build.Options) {
		for _, p := range ps {
			os, rest, _ := strings.Cut(p, "/")
			arch, variant, _ := strings.Cut(rest, "/")
			o.Platforms = append(o.Platforms, v1.Platform{OS: os, Architecture: arch, Variant: variant})
		}
	}
}

// TestPlatformSingleBaseMismatchIsAnError: a single-platform base (a
// manifest, not an index) is never used for another platform: the error
// names the platform it has, for one --platform and for several.
func TestPlatformSingleBaseMismatchIsAnError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := "linux/arm64"
	if runtime.GOARCH == "arm64" {
		other = "linux/amd64"
	}
	host := "linux/" + runtime.GOARCH
	for _, ps := range [][]string{{other}, {host, other}} {
		_, err := e.build(t, "FROM {{REG}}/library/busybox\nCOPY a /a\n", map[string]file{"a": {content: "a"}}, platforms(ps...))
		if err == nil {
			t.Fatalf("--platform %s on a single-platform %s base built", strings.Join(ps, ","), host)
		}
		if msg := err.Error(); !strings.Contains(msg, "Dockerfile:1: FROM ") || !strings.Contains(msg, "is for "+host+" only") || !strings.Contains(msg, "not "+other) {
			t.Errorf("--platform %s: %v, want the base's platform %s named at line 1", strings.Join(ps, ","), err, host)
		}
	}
	// The base's own platform, with or without arm64's v8 variant.
	want := host
	if runtime.GOARCH == "arm64" {
		want = "linux/arm64/v8"
	}
	img := e.mustBuild(t, "FROM {{REG}}/library/busybox\n", nil, platforms(want))
	if cfg, _ := img.ConfigFile(); cfg.Architecture != runtime.GOARCH {
		t.Errorf("architecture %s", cfg.Architecture)
	}
}

// TestPlatformIndexBase: from an index, each platform's build takes its own
// image (the tree and the config say so); a platform the index lacks is an
// error listing those it has.
func TestPlatformIndexBase(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, arch := range []string{"amd64", "arm64"} {
		img := e.mustBuild(t, "FROM {{REG}}/library/multi\n", nil, platforms("linux/"+arch))
		cfg, _ := img.ConfigFile()
		tree := testutil.ImageTree(t, img)
		if cfg.Architecture != arch || testutil.TreeEntry(tree, "/opt/"+arch) == "" {
			t.Errorf("--platform linux/%s: config %s, tree %q", arch, cfg.Platform(), tree)
		}
	}
	_, err := e.build(t, "FROM {{REG}}/library/multi\n", nil, platforms("linux/amd64", "linux/s390x"))
	if err == nil || !strings.Contains(err.Error(), "no image for platform linux/s390x") ||
		!strings.Contains(err.Error(), "linux/amd64, linux/arm64/v8") {
		t.Errorf("err = %v, want the missing platform and the index's list", err)
	}
}

// TestPlatformBuildStageStaysOnBuildPlatform: FROM --platform=$BUILDPLATFORM
// stages use the host's image from a single-platform base while the final
// stage is the target's, for each target of a multi-platform build.
func TestPlatformBuildStageStaysOnBuildPlatform(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	res, err := e.build(t, `FROM --platform=$BUILDPLATFORM {{REG}}/library/busybox AS tools
ARG TARGETARCH
ARG BUILDPLATFORM
ENV FOR=$TARGETARCH ON=$BUILDPLATFORM
FROM {{REG}}/library/multi
COPY --from=tools /bin/busybox /tools/busybox
`, nil, platforms("linux/amd64", "linux/arm64"))
	if err != nil {
		t.Fatal(err)
	}
	idx := resIndex(t, res)
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for i, arch := range []string{"amd64", "arm64"} {
		img, err := idx.Image(im.Manifests[i].Digest)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := img.ConfigFile()
		tree := testutil.ImageTree(t, img)
		if cfg.Architecture != arch || testutil.TreeEntry(tree, "/opt/"+arch) == "" || testutil.TreeEntry(tree, "/tools/busybox") == "" {
			t.Errorf("image %d: %s, tree %q", i, cfg.Platform(), tree)
		}
	}
}

// TestPlatformImplicitForeignBase: without --platform, a single-platform
// base of another architecture is built for its own platform (BuildKit's
// rule), with a warning; its config keeps that platform.
func TestPlatformImplicitForeignBase(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	foreign := v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	if runtime.GOARCH == "arm64" {
		foreign = v1.Platform{OS: "linux", Architecture: "amd64"}
	}
	img, err := harness.PlatformImage(foreign)
	if err != nil {
		t.Fatal(err)
	}
	testutil.PushImage(t, e.reg+"/library/foreign:1", img)
	var log bytes.Buffer
	out := e.mustBuild(t, "FROM {{REG}}/library/foreign:1\nCOPY a /a\n", map[string]file{"a": {content: "a"}},
		func(o *build.Options) { o.Log = &log })
	cfg, _ := out.ConfigFile()
	if cfg.Architecture != foreign.Architecture {
		t.Errorf("architecture %s, want the base's %s", cfg.Architecture, foreign.Architecture)
	}
	if !strings.Contains(log.String(), "warning: base image ") {
		t.Errorf("no warning about the foreign base:\n%s", log.String())
	}
	// Asked for explicitly, the host's platform is refused.
	if _, err := e.build(t, "FROM {{REG}}/library/foreign:1\n", nil, platforms(plat.Default().OS+"/"+plat.Default().Architecture)); err == nil {
		t.Errorf("--platform of the host built on a %s-only base", foreign.Architecture)
	}
}

// TestPlatformPinnedFinalStage: a final stage pinned to another platform
// (FROM --platform=linux/amd64 scratch, files that suit every platform) is
// labelled with the platform asked for, as BuildKit does, with a warning.
func TestPlatformPinnedFinalStage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var log bytes.Buffer
	img := e.mustBuild(t, "FROM --platform=linux/amd64 scratch\nCOPY a /a\n", map[string]file{"a": {content: "a"}},
		platforms("linux/arm64"), func(o *build.Options) { o.Log = &log })
	cfg, _ := img.ConfigFile()
	if cfg.Architecture != "arm64" || cfg.Variant != "" {
		t.Errorf("config platform %s, want linux/arm64", cfg.Platform())
	}
	if !strings.Contains(log.String(), "is built on linux/amd64 and labelled linux/arm64") {
		t.Errorf("no warning about the pinned final stage:\n%s", log.String())
	}
}
