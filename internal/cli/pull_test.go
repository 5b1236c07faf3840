package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func layerBytes(t *testing.T, img v1.Image) int64 {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, l := range layers {
		s, _ := l.Size()
		n += s
	}
	return n
}

func TestPull(t *testing.T) {
	isolateAuth(t)
	reg := startRegistry(t)
	img := reg.seed(t, "library/tool:1", 100_000, 2)
	root := t.TempDir()
	out, errOut, err := run(t, root, "", "--progress", "plain", "pull", reg.host+"/library/tool:1")
	if err != nil {
		t.Fatalf("pull: %v\n%s", err, errOut)
	}
	if strings.TrimSpace(out) != reg.host+"/library/tool:1" {
		t.Errorf("stdout %q", out)
	}
	want, _ := img.Digest()
	if !strings.Contains(errOut, "1: Pulling from library/tool") || strings.Count(errOut, ": Pull complete") != 2 ||
		!strings.Contains(errOut, "Digest: "+want.String()) || !strings.Contains(errOut, "Status: Downloaded newer image for "+reg.host+"/library/tool:1") {
		t.Errorf("stderr %q", errOut)
	}
	if got, size := reg.downBytes.Load(), layerBytes(t, img); got < size {
		t.Errorf("downloaded %d bytes, the layers are %d", got, size)
	}
	// In the store, tagged, with every layer.
	out, _, err = run(t, root, "", "images", "--digests", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}")
	if err != nil || strings.TrimSpace(out) != reg.host+"/library/tool:1 "+want.String() {
		t.Errorf("images: %q %v", out, err)
	}
	if _, _, err := run(t, root, "", "save", "-o", t.TempDir()+"/x.tar", reg.host+"/library/tool:1"); err != nil {
		t.Errorf("save after pull (reads every layer): %v", err)
	}

	// Again: no layer downloaded.
	layers, _ := img.Layers()
	fetches := func() int {
		n := 0
		for _, l := range layers {
			d, _ := l.Digest()
			n += reg.fetchCount(d.String())
		}
		return n
	}
	before := fetches()
	if before != 2 {
		t.Errorf("first pull fetched layers %d times, want 2", before)
	}
	_, errOut, err = run(t, root, "", "--progress", "plain", "pull", reg.host+"/library/tool:1")
	if err != nil {
		t.Fatal(err)
	}
	if fetches() != before {
		t.Errorf("second pull downloaded %d layers", fetches()-before)
	}
	if strings.Count(errOut, ": Already exists") != 2 || !strings.Contains(errOut, "Status: Image is up to date") {
		t.Errorf("second pull: %q", errOut)
	}
	// -q: the name only.
	out, errOut, err = run(t, root, "", "pull", "-q", reg.host+"/library/tool:1")
	if err != nil || strings.TrimSpace(out) != reg.host+"/library/tool:1" || errOut != "" {
		t.Errorf("-q: %q %q %v", out, errOut, err)
	}
	// Errors name the reference.
	_, _, err = run(t, root, "", "--retry", "0", "pull", reg.host+"/library/tool:nope")
	if err == nil || !strings.Contains(err.Error(), reg.host+"/library/tool:nope: manifest unknown") {
		t.Errorf("unknown tag: %v", err)
	}
	if _, _, err = run(t, root, "", "pull", "--platform", "linux/amd64", "--all-platforms", reg.host+"/library/tool:1"); err == nil {
		t.Error("--platform with --all-platforms accepted")
	}
}

// platformIndex pushes an index of linux/amd64 and linux/arm64 images.
func platformIndex(t *testing.T, reg *testRegistry, ref string) (v1.ImageIndex, map[string]v1.Image) {
	t.Helper()
	imgs := map[string]v1.Image{}
	var adds []mutate.IndexAddendum
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(20_000, 2)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		cf.OS, cf.Architecture = "linux", arch
		img, err = mutate.ConfigFile(img, cf)
		if err != nil {
			t.Fatal(err)
		}
		imgs[arch] = img
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	idx := mutate.AppendManifests(empty.Index, adds...)
	r, err := name.ParseReference(reg.host + "/" + ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	return idx, imgs
}

func TestPullPlatforms(t *testing.T) {
	isolateAuth(t)
	reg := startRegistry(t)
	idx, imgs := platformIndex(t, reg, "multi/app:1")
	root := t.TempDir()
	_, errOut, err := run(t, root, "", "pull", "--platform", "linux/arm64", reg.host+"/multi/app:1")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	idxDigest, _ := idx.Digest()
	if !strings.Contains(errOut, "Digest: "+idxDigest.String()) {
		t.Errorf("the index digest is not shown: %q", errOut)
	}
	armDigest, _ := imgs["arm64"].Digest()
	out, _, _ := run(t, root, "", "inspect", "--format", "{{.Digest}} {{.Architecture}}", reg.host+"/multi/app:1")
	if strings.TrimSpace(out) != armDigest.String()+" arm64" {
		t.Errorf("inspect after --platform linux/arm64: %q", out)
	}
	// Only the arm64 layers came down.
	amdLayers, _ := imgs["amd64"].Layers()
	for _, l := range amdLayers {
		d, _ := l.Digest()
		if reg.fetched(d.String()) {
			t.Errorf("amd64 layer %s downloaded", d)
		}
	}
	_, _, err = run(t, root, "", "pull", "--platform", "linux/s390x", reg.host+"/multi/app:1")
	if err == nil || !strings.Contains(err.Error(), "no image for platform linux/s390x (available: linux/amd64, linux/arm64)") {
		t.Errorf("missing platform: %v", err)
	}

	// --all-platforms stores the index.
	root2 := t.TempDir()
	if _, errOut, err := run(t, root2, "", "pull", "--all-platforms", reg.host+"/multi/app:1"); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	out, _, err = run(t, root2, "", "inspect", reg.host+"/multi/app:1")
	if err != nil {
		t.Fatal(err)
	}
	var got []struct {
		Digest    string
		Manifests []v1.Descriptor
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 || got[0].Digest != idxDigest.String() || len(got[0].Manifests) != 2 {
		t.Errorf("inspect of the pulled index: %s (%v)", out, err)
	}
	// Every layer once into this store (arm64's also once into the first).
	for arch, img := range imgs {
		want := 1
		if arch == "arm64" {
			want = 2
		}
		ls, _ := img.Layers()
		for _, l := range ls {
			d, _ := l.Digest()
			if got := reg.fetchCount(d.String()); got != want {
				t.Errorf("%s layer %s fetched %d times, want %d", arch, d, got, want)
			}
		}
	}
}
