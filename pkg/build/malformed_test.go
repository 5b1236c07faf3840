package build_test

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/kiln-build/kiln/internal/testutil"
)

// A base whose config does not match its manifest is refused with an
// error naming the reference, never used.
func TestMalformedBase(t *testing.T) {
	e := newEnv(t)
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.RootFS.DiffIDs = cfg.RootFS.DiffIDs[:1] // one diff ID for two layers
	bad, err := mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The proxy forwards to the backend registry: push through it.
	testutil.PushImage(t, e.reg+"/library/broken:1", bad)
	_, err = e.build(t, "FROM {{REG}}/library/broken:1\nENV A=b\n", nil)
	want := "Dockerfile:1: FROM " + e.reg + "/library/broken:1: malformed image"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want %q", err, want)
	}
}
