package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/kiln-build/kiln/internal/testutil"
)

// javaBase is what the java-layers checks compare against.
type javaBase struct {
	registry  string // the docker-registry holding library/debian:bookworm
	context   string // testdata/workloads/java-layers, generated
	jarSHA    string // sha256 of a dependency jar in the context
	baseDiff  v1.Hash
	baseLayer v1.Hash // compressed digest of the base layer in the registry
	baseCfg   v1.Hash // digest of the base config blob
}

// TestJavaLayers builds the java-layers workload (a Debian base from a real
// registry, WORKDIR, five COPYs of a Spring Boot layered jar, ENTRYPOINT) to
// each output kiln has, and checks the results with skopeo and
// go-containerregistry.
func TestJavaLayers(t *testing.T) {
	testutil.SkipIfShort(t)
	testutil.RequireSkopeo(t)
	jb := javaBase{context: workload(t, "java-layers")}
	jb.registry = testutil.StartRegistry(t)
	base := testutil.DebianImage(t)
	testutil.PushImage(t, jb.registry+"/library/debian:bookworm", base)
	jb.jarSHA = fileSHA256(t, filepath.Join(jb.context, "build/libs/dependencies/BOOT-INF/lib/big-lib-0-1.0.0.jar"))
	layers, err := base.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if jb.baseDiff, err = layers[0].DiffID(); err != nil {
		t.Fatal(err)
	}
	if jb.baseLayer, err = layers[0].Digest(); err != nil {
		t.Fatal(err)
	}
	if jb.baseCfg, err = base.ConfigName(); err != nil {
		t.Fatal(err)
	}

	t.Run("store", func(t *testing.T) { javaStore(t, jb) })
	t.Run("docker-archive", func(t *testing.T) { javaDockerArchive(t, jb) })
	t.Run("oci-layout", func(t *testing.T) { javaOCILayout(t, jb) })
	t.Run("zero-base-bytes", func(t *testing.T) { javaZeroBaseBytes(t, jb) })
}

// javaArgs are the build arguments of every java-layers build.
func javaArgs(registry string) []string {
	return []string{"--build-arg", "REGISTRY=" + registry, "--build-arg", "PIPELINE_ID_ARG=123"}
}

// javaStore: a build into the local store, then `kiln images`.
func javaStore(t *testing.T, jb javaBase) {
	root := t.TempDir()
	iid := filepath.Join(t.TempDir(), "iid")
	args := append([]string{"--root", root, "build"}, javaArgs(jb.registry)...)
	args = append(args, "-t", "app:1", "-t", "app:2", "--iidfile", iid, jb.context)
	id := builtID(t, kiln(t, args...))
	if b, err := os.ReadFile(iid); err != nil || strings.TrimSpace(string(b)) != id {
		t.Errorf("--iidfile holds %q (%v), build printed %s", b, err, id)
	}
	out := kiln(t, "--root", root, "images").stdout
	short := strings.TrimPrefix(id, "sha256:")[:12]
	for _, tag := range []string{"1", "2"} {
		row := imagesRow(out, "app", tag)
		if row == "" {
			t.Errorf("kiln images does not list app:%s:\n%s", tag, out)
			continue
		}
		if !strings.Contains(row, short) {
			t.Errorf("kiln images row for app:%s does not show the image ID %s: %q", tag, short, row)
		}
	}
	if !strings.Contains(strings.SplitN(out, "\n", 2)[0], "REPOSITORY") {
		t.Errorf("kiln images has no REPOSITORY header:\n%s", out)
	}
}

// javaDockerArchive: --output type=docker, read by skopeo.
func javaDockerArchive(t *testing.T, jb javaBase) {
	tmp := t.TempDir()
	archive := filepath.Join(tmp, "app.tar")
	args := append([]string{"--root", filepath.Join(tmp, "root"), "build"}, javaArgs(jb.registry)...)
	args = append(args, "-t", "app:1", "-t", "app:2", "--output", "type=docker,dest="+archive, jb.context)
	builtID(t, kiln(t, args...))

	var inspect struct {
		Layers []string
		Env    []string
	}
	skopeoJSON(t, &inspect, "inspect", "docker-archive:"+archive)
	if len(inspect.Layers) != 7 {
		t.Errorf("skopeo inspect: %d layers, want 7 (base + WORKDIR + 5 COPY): %v", len(inspect.Layers), inspect.Layers)
	}
	if !slices.Contains(inspect.Env, "PIPELINE_ID=123") {
		t.Errorf("skopeo inspect: Env %q lacks PIPELINE_ID=123", inspect.Env)
	}
	var cfg v1.ConfigFile
	skopeoJSON(t, &cfg, "inspect", "--config", "docker-archive:"+archive)
	checkJavaConfig(t, &cfg, jb)

	oci := filepath.Join(tmp, "oci")
	if out, err := exec.Command("skopeo", "copy", "--quiet", "docker-archive:"+archive, "oci:"+oci+":app").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy docker-archive:%s oci:%s:app: %v\n%s", archive, oci, err, out)
	}
	idx, err := layout.ImageIndexFromPath(oci)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var img v1.Image
	for _, d := range im.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] == "app" {
			if img, err = idx.Image(d.Digest); err != nil {
				t.Fatal(err)
			}
		}
	}
	if img == nil {
		t.Fatalf("skopeo's OCI layout has no image named app: %+v", im.Manifests)
	}
	checkJavaImage(t, img, jb)
}

// javaOCILayout: --output type=oci, read with go-containerregistry.
func javaOCILayout(t *testing.T, jb javaBase) {
	tmp := t.TempDir()
	dest := filepath.Join(tmp, "oci")
	args := append([]string{"--root", filepath.Join(tmp, "root"), "build"}, javaArgs(jb.registry)...)
	args = append(args, "-t", "app:1", "-t", "app:2", "--output", "type=oci,dest="+dest, jb.context)
	builtID(t, kiln(t, args...))

	if _, err := os.Stat(filepath.Join(dest, "oci-layout")); err != nil {
		t.Fatalf("no OCI layout at %s: %v", dest, err)
	}
	idx, err := layout.ImageIndexFromPath(dest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) == 0 {
		t.Fatalf("%s/index.json lists no manifests", dest)
	}
	first := im.Manifests[0].Digest
	for _, d := range im.Manifests {
		if d.Digest != first {
			t.Errorf("index lists different images %s and %s for one build", first, d.Digest)
		}
	}
	img, err := idx.Image(first)
	if err != nil {
		t.Fatal(err)
	}
	checkJavaImage(t, img, jb)
}

// javaZeroBaseBytes: a build of COPY/metadata steps on a registry base
// reads each base layer at most once, for its path index (COPY must know
// whether its destinations are directories or symlinks of the base, as
// BuildKit does), and says so; a second build on the same store, and a
// fresh store with the index in the registry cache (--cache-from), download
// no base layer: a counting proxy sits in front of the registry.
func javaZeroBaseBytes(t *testing.T, jb javaBase) {
	proxy, counts := testutil.CountingProxy(t, jb.registry)
	root := t.TempDir()
	cacheRepo := proxy + "/cache/java-layers"
	build := func(root string, extra ...string) run {
		args := append([]string{"--root", root, "build"}, javaArgs(proxy)...)
		args = append(append(args, extra...), "-t", "app:1", jb.context)
		r := kiln(t, args...)
		builtID(t, r)
		return r
	}
	r := build(root, "--cache-to", cacheRepo)
	if g := counts.BlobGets(jb.baseLayer.String()); g > 1 {
		t.Errorf("the first build fetched the base layer %s %d times (at most once, for its index)", jb.baseLayer, g)
	} else if n := counts.BlobBytes(jb.baseLayer.String()); n > 0 && !strings.Contains(r.stderr, "for its path index") {
		t.Errorf("the first build fetched the base layer without saying why:\n%s", r.stderr)
	}
	if counts.BlobGets(jb.baseCfg.String()) == 0 {
		t.Errorf("the base config %s was not fetched through the proxy; requests: %q", jb.baseCfg, counts.Requests())
	}
	before := counts.BlobBytes(jb.baseLayer.String())
	build(root)
	if n := counts.BlobBytes(jb.baseLayer.String()) - before; n != 0 {
		t.Errorf("a second build on the same store downloaded %d bytes of the base layer (want 0: its index is in the store)", n)
	}
	build(t.TempDir(), "--cache-from", cacheRepo)
	if n := counts.BlobBytes(jb.baseLayer.String()) - before; n != 0 {
		t.Errorf("a fresh store with --cache-from downloaded %d bytes of the base layer (want 0: its index is in the registry cache)", n)
	}
	t.Logf("requests through the proxy: %q", counts.Requests())
}

// checkJavaImage checks a java-layers image read back from an output.
func checkJavaImage(t *testing.T, img v1.Image, jb javaBase) {
	t.Helper()
	if err := validate.Image(img); err != nil {
		t.Errorf("image is not valid (digests, diff IDs, sizes): %v", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	checkJavaConfig(t, cfg, jb)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 7 {
		t.Errorf("%d layers, want 7 (base + WORKDIR + 5 COPY)", len(layers))
	}
	tree := testutil.ImageTree(t, img)
	if got := treeField(t, tree, "/application/BOOT-INF/lib/big-lib-0-1.0.0.jar", 5); got != jb.jarSHA {
		t.Errorf("big-lib-0-1.0.0.jar in the image has sha256 %s, the context's %s", got, jb.jarSHA)
	}
	if got := treeField(t, tree, "/application/VERSION", 5); got != sha256Hex("1.0.0\n") {
		t.Errorf("/application/VERSION content sha256 %s, want that of \"1.0.0\\n\"", got)
	}
	treeField(t, tree, "/application/org/springframework/boot/loader/p0/Loader0.class", 1)
	treeField(t, tree, "/application/BOOT-INF/classes/application.yml", 1)
	treeField(t, tree, "/usr/bin/apt-get", 1) // from the base layer
	if typ := treeField(t, tree, "/application", 1); typ != "dir" {
		t.Errorf("/application is a %s", typ)
	}
}

// checkJavaConfig checks the parts of the config the Dockerfile sets.
func checkJavaConfig(t *testing.T, cfg *v1.ConfigFile, jb javaBase) {
	t.Helper()
	if !slices.Contains(cfg.Config.Env, "PIPELINE_ID=123") {
		t.Errorf("Env %q lacks PIPELINE_ID=123", cfg.Config.Env)
	}
	if !slices.ContainsFunc(cfg.Config.Env, func(s string) bool { return strings.HasPrefix(s, "PATH=") }) {
		t.Errorf("Env %q lost the base's PATH", cfg.Config.Env)
	}
	want := []string{"java", "org.springframework.boot.loader.launch.JarLauncher"}
	if !slices.Equal(cfg.Config.Entrypoint, want) {
		t.Errorf("Entrypoint %q, want %q", cfg.Config.Entrypoint, want)
	}
	if cfg.Config.WorkingDir != "/application" {
		t.Errorf("WorkingDir %q, want /application", cfg.Config.WorkingDir)
	}
	if len(cfg.RootFS.DiffIDs) == 0 || cfg.RootFS.DiffIDs[0] != jb.baseDiff {
		t.Errorf("first diff ID %v, want the base layer's %s", cfg.RootFS.DiffIDs, jb.baseDiff)
	}
	if cfg.OS != "linux" || cfg.Architecture == "" {
		t.Errorf("platform %s/%s", cfg.OS, cfg.Architecture)
	}
}

// skopeoJSON runs skopeo with args and decodes its JSON output into v.
func skopeoJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out, err := exec.Command("skopeo", args...).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, msg)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
