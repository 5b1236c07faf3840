package cli

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/kiln-build/kiln/internal/testutil"
)

func TestCopyWithinRegistry(t *testing.T) {
	isolateAuth(t)
	reg := startRegistry(t)
	img := reg.seed(t, "ci/app:build_1.2.3_456", 300_000, 3)
	want, _ := img.Digest()
	up, down := reg.upBytes.Load(), reg.downBytes.Load()
	root := t.TempDir()
	df := filepath.Join(t.TempDir(), "digest")
	out, errOut, err := run(t, root, "", "--progress", "plain", "copy", "--digestfile", df,
		reg.host+"/ci/app:build_1.2.3_456", reg.host+"/release/app:release-1.2.3", "docker://"+reg.host+"/release/app:1.2")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if u, d := reg.upBytes.Load()-up, reg.downBytes.Load()-down; u != 0 || d != 0 {
		t.Errorf("copy within one registry moved %d bytes up, %d down; want 0", u, d)
	}
	if n := strings.Count(errOut, ": Mounted from ci/app"); n != 3 {
		t.Errorf("%d layers mounted:\n%s", n, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || lines[0] != reg.host+"/release/app:release-1.2.3: digest: "+want.String()+" size: "+sizeOf(t, img) ||
		!strings.HasPrefix(lines[1], reg.host+"/release/app:1.2: digest: "+want.String()) {
		t.Errorf("stdout %q", out)
	}
	for _, tg := range []string{"release/app:release-1.2.3", "release/app:1.2"} {
		if got := reg.remoteDigest(t, tg); got != want.String() {
			t.Errorf("%s: %s", tg, got)
		}
	}
	if b, _ := os.ReadFile(df); string(b) != want.String() {
		t.Errorf("digestfile %q", b)
	}
	t.Logf("copy within one registry: 0 blob bytes up, 0 down, %d mounts", reg.mounts.Load())

	// The promote alias, a destination without tag (keeps the source's), -q.
	out, errOut, err = run(t, root, "", "promote", "-q", reg.host+"/ci/app:build_1.2.3_456", reg.host+"/prod/app")
	if err != nil || strings.TrimSpace(out) != want.String() || errOut != "" {
		t.Errorf("promote -q: %q %q %v", out, errOut, err)
	}
	if got := reg.remoteDigest(t, "prod/app:build_1.2.3_456"); got != want.String() {
		t.Errorf("prod/app:build_1.2.3_456 = %s", got)
	}
	// By digest, to a repository: pushed by digest.
	if _, _, err := run(t, root, "", "copy", reg.host+"/ci/app@"+want.String(), reg.host+"/bydigest/app"); err != nil {
		t.Fatal(err)
	}
	if got := reg.remoteDigest(t, "bydigest/app@"+want.String()); got != want.String() {
		t.Errorf("copy by digest: %s", got)
	}
	_, _, err = run(t, root, "", "--retry", "0", "copy", reg.host+"/ci/app:missing", reg.host+"/x/y:1")
	if err == nil || !strings.Contains(err.Error(), reg.host+"/ci/app:missing: manifest unknown") {
		t.Errorf("missing source: %v", err)
	}
}

func sizeOf(t *testing.T, img interface{ RawManifest() ([]byte, error) }) string {
	t.Helper()
	b, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(len(b))
}

func TestCopyAcrossRegistries(t *testing.T) {
	isolateAuth(t)
	a, b := startRegistry(t), startRegistry(t)
	img := a.seed(t, "app:1", 200_000, 2)
	want, _ := img.Digest()
	root := t.TempDir()
	downA := a.downBytes.Load()
	out, errOut, err := run(t, root, "", "--progress", "plain", "copy", a.host+"/app:1", b.host+"/mirror/app:1")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if !strings.Contains(out, ": digest: "+want.String()) || strings.Count(errOut, ": Copied") != 2 {
		t.Errorf("stdout %q stderr %q", out, errOut)
	}
	lb := layerBytes(t, img)
	if got := b.upBytes.Load(); got < lb {
		t.Errorf("B received %d bytes, layers are %d", got, lb)
	}
	if got := a.downBytes.Load() - downA; got < lb {
		t.Errorf("A served %d bytes, layers are %d", got, lb)
	}
	// Nothing was stored locally.
	if out, _, _ := run(t, root, "", "images", "-q"); out != "" {
		t.Errorf("copy stored images: %q", out)
	}
	// The copy reads back whole.
	r, _ := name.ParseReference(b.host + "/mirror/app:1")
	got, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckLayers(t, got)
	t.Logf("copy across registries: %d layer bytes streamed (A served %d, B received %d)", lb, a.downBytes.Load()-downA, b.upBytes.Load())
}

func TestCopyIndexAllTagsAndLocal(t *testing.T) {
	isolateAuth(t)
	a, b := startRegistry(t), startRegistry(t)
	idx, _ := platformIndex(t, a, "multi/app:1")
	want, _ := idx.Digest()
	root := t.TempDir()
	up := a.upBytes.Load()
	if _, errOut, err := run(t, root, "", "copy", a.host+"/multi/app:1", a.host+"/multi2/app:1", b.host+"/multi/app:1"); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if a.upBytes.Load() != up {
		t.Errorf("index copy within A uploaded %d bytes", a.upBytes.Load()-up)
	}
	for _, reg := range []*testRegistry{a, b} {
		target := "multi2/app:1"
		if reg == b {
			target = "multi/app:1"
		}
		r, _ := name.ParseReference(reg.host + "/" + target)
		got, err := remote.Index(r)
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := got.Digest(); d != want {
			t.Errorf("%s: %s, want %s", target, d, want)
		}
		im, _ := got.IndexManifest()
		for _, c := range im.Manifests {
			img, err := got.Image(c.Digest)
			if err != nil {
				t.Fatal(err)
			}
			testutil.CheckLayers(t, img)
		}
	}

	// --all-tags.
	for _, tg := range []string{"1.0", "1.1"} {
		a.seed(t, "src/app:"+tg, 1000, 1)
	}
	out, errOut, err := run(t, root, "", "copy", "--all-tags", a.host+"/src/app", b.host+"/dst/app")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if n := len(strings.Split(strings.TrimSpace(out), "\n")); n != 2 {
		t.Errorf("--all-tags stdout %q", out)
	}
	for _, tg := range []string{"1.0", "1.1"} {
		if a.remoteDigest(t, "src/app:"+tg) != b.remoteDigest(t, "dst/app:"+tg) {
			t.Errorf("tag %s differs", tg)
		}
	}
	if _, _, err := run(t, root, "", "copy", "--all-tags", a.host+"/src/app:1.0", b.host+"/dst/app"); err == nil || !strings.Contains(err.Error(), "must be a repository") {
		t.Errorf("--all-tags with a tag: %v", err)
	}

	// local: a store image as the source.
	id := buildApp(t, root, "scratch", 3000, nil, "local-app:1")
	out, errOut, err = run(t, root, "", "copy", "local:local-app:1", b.host+"/from-store/app:1")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	d := b.remoteDigest(t, "from-store/app:1")
	if !strings.Contains(out, d) {
		t.Errorf("stdout %q, registry %s", out, d)
	}
	out, _, _ = run(t, root, "", "inspect", "--format", "{{.Id}}", "local-app:1")
	if strings.TrimSpace(out) != id {
		t.Errorf("inspect id %q, build said %q", out, id)
	}
}
