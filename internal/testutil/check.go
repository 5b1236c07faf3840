package testutil

import (
	"bytes"
	"io"
	"os"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// RandomImage is go-containerregistry's random image of layers 256-byte
// layers, its config naming linux/amd64 (as a real image's does).
func RandomImage(t testing.TB, layers int64) v1.Image {
	t.Helper()
	return RandomImageOn(t, layers, v1.Platform{OS: "linux", Architecture: "amd64"})
}

// RandomImageOn is RandomImage with a config naming platform p.
func RandomImageOn(t testing.TB, layers int64, p v1.Platform) v1.Image {
	t.Helper()
	img, err := random.Image(256, layers)
	Require(t, err)
	cf, err := img.ConfigFile()
	Require(t, err)
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	img, err = mutate.ConfigFile(img, cf)
	Require(t, err)
	return img
}

// CheckLayers reads every layer of img and checks it against its digest.
func CheckLayers(t testing.TB, img v1.Image) {
	t.Helper()
	layers, err := img.Layers()
	Require(t, err)
	for _, l := range layers {
		rc, err := l.Compressed()
		Require(t, err)
		h, _, err := v1.SHA256(rc)
		rc.Close()
		want, _ := l.Digest()
		if err != nil || h != want {
			t.Fatalf("layer %s reads back as %s (%v)", want, h, err)
		}
	}
}

// Digest is d's digest (an image's, an index's, a layer's).
func Digest(t testing.TB, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	Require(t, err)
	return h
}

// ReadAll reads all that open gives (a layer's Compressed or
// Uncompressed).
func ReadAll(t testing.TB, open func() (io.ReadCloser, error)) []byte {
	t.Helper()
	rc, err := open()
	Require(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	Require(t, err)
	return b
}

// DirNames lists the names in dir, sorted.
func DirNames(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	Require(t, err)
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// SameImage checks that got has want's manifest bytes and compressed
// layers, and that it validates (every layer matches its digest and diff
// ID).
func SameImage(t testing.TB, got, want v1.Image) {
	t.Helper()
	wantRaw, err := want.RawManifest()
	Require(t, err)
	gotRaw, err := got.RawManifest()
	Require(t, err)
	if !bytes.Equal(wantRaw, gotRaw) {
		t.Fatalf("manifest differs:\n got %s\nwant %s", gotRaw, wantRaw)
	}
	wl, err := want.Layers()
	Require(t, err)
	gl, err := got.Layers()
	Require(t, err)
	if len(wl) != len(gl) {
		t.Fatalf("%d layers, want %d", len(gl), len(wl))
	}
	for i := range wl {
		if !bytes.Equal(ReadAll(t, wl[i].Compressed), ReadAll(t, gl[i].Compressed)) {
			t.Fatalf("layer %d differs", i)
		}
	}
	if err := validate.Image(got); err != nil {
		t.Fatal(err)
	}
}

// ReadImage reads everything of img (config, manifest, every layer
// uncompressed up to 4 MiB, diff IDs), ignoring errors: for fuzz targets,
// whose only claim is that nothing panics.
func ReadImage(img v1.Image) {
	_, _ = img.ConfigFile()
	_, _ = img.Manifest()
	layers, _ := img.Layers()
	for _, l := range layers {
		if rc, err := l.Uncompressed(); err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(rc, 4<<20))
			rc.Close()
		}
		_, _ = l.DiffID()
	}
}
