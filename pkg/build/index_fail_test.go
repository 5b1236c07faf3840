package build_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/build"
	"github.com/kiln-build/kiln/pkg/cache"
	"github.com/kiln-build/kiln/pkg/store"
)

// TestIndexOfABrokenBaseLayer: a COPY-only stage on a fresh store makes
// its base's path index from the base layer while it goes on with
// guesses. A layer that is not what the image says (corrupted, or not
// the config's diff ID) fails the build with an error naming the image
// and the layer, and leaves neither an index nor the layer's blob.
func TestIndexOfABrokenBaseLayer(t *testing.T) {
	e := newEnv(t)
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	data := bytes.Repeat([]byte("kiln layer index "), 1<<16) // 1 MiB
	for _, name := range []string{"etc/a", "etc/b", "usr/c"} {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))})
		tw.Write(data)
	}
	tw.Close()
	sum := sha256.Sum256(tb.Bytes())
	diffID := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tb.Bytes())
	zw.Close()
	corrupt := bytes.Clone(gz.Bytes())
	corrupt[len(corrupt)/2] ^= 0x55
	other := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}

	for _, c := range []struct {
		name   string
		blob   []byte
		diffID v1.Hash
		want   string
	}{
		{"corrupted", corrupt, diffID, ""},
		{"another diff ID", gz.Bytes(), other, "does not match the config's diff ID"},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := static.NewLayer(c.blob, types.DockerLayer)
			img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: l})
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			cfg = cfg.DeepCopy()
			cfg.RootFS.DiffIDs = []v1.Hash{c.diffID}
			if img, err = mutate.ConfigFile(img, cfg); err != nil {
				t.Fatal(err)
			}
			ref := e.reg + "/library/broken-" + strings.ToLower(strings.ReplaceAll(c.name, " ", "-")) + ":1"
			testutil.PushImage(t, ref, img)
			digest, _ := l.Digest()

			st, err := store.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			_, err = e.build(t, "FROM "+ref+"\nWORKDIR /app\nCOPY a .\n", destContext,
				func(o *build.Options) { o.Store = st; o.Cache = cache.NewLocal(st) })
			if err == nil || !strings.Contains(err.Error(), ref) || !strings.Contains(err.Error(), "layer "+digest.String()) ||
				!strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %s, its layer %s and saying %q", err, ref, digest, c.want)
			}
			if st.HasBlob(digest) {
				t.Error("the broken layer was kept in the store")
			}
			if data, _ := cache.NewLocal(st).GetIndex(context.Background(), c.diffID); data != nil {
				t.Error("an index was kept for the broken layer")
			}
		})
	}
}
