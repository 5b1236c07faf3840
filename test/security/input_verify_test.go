package security

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// fileLayer is a gzip layer holding one file /file with content.
func fileLayer(t *testing.T, content string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "file", Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(content))
	tw.Close()
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func compressedBytes(t *testing.T, l v1.Layer) []byte {
	t.Helper()
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// lyingRegistry serves go-containerregistry's in-memory registry, except
// that GET of a blob listed in swap gets the other bytes.
func lyingRegistry(t *testing.T, swap map[string][]byte) string {
	t.Helper()
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			d := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
			if b, ok := swap[d]; ok {
				w.Header().Set("Content-Length", fmt.Sprint(len(b)))
				w.Header().Set("Docker-Content-Digest", d)
				w.Write(b)
				return
			}
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// pushTo pushes img to ref of the registry at addr (plain HTTP) and returns
// ref pinned to its digest.
func pushTo(t *testing.T, addr, repo string, img v1.Image) string {
	t.Helper()
	ref, err := name.ParseReference(addr+"/"+repo+":1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return addr + "/" + repo + "@" + d.String()
}

// storeHasBlob reports whether the store at root holds blob d.
func storeHasBlob(root string, d v1.Hash) bool {
	_, err := os.Stat(filepath.Join(root, "blobs", d.Algorithm, d.Hex))
	return err == nil
}

// TestInputVerifyCopyFromImage (finding 5): COPY --from=<remote image>
// reads layer bytes that do not match the manifest's digest (a registry
// that lies about a digest-pinned reference), or whose diff ID is not the
// config's: the build fails naming the image and the blob, and neither the
// bytes nor an image land in the store.
func TestInputVerifyCopyFromImage(t *testing.T) {
	t.Parallel()
	good := fileLayer(t, "good content\n")
	goodBytes := compressedBytes(t, good)
	goodDigest, _ := good.Digest()
	// Bytes of the same length with other content.
	var evilBytes []byte
	for i := 0; i < 1000 && evilBytes == nil; i++ {
		b := compressedBytes(t, fileLayer(t, fmt.Sprintf("evil cont%03d\n", i)))
		if len(b) == len(goodBytes) {
			evilBytes = b
		}
	}
	if evilBytes == nil {
		t.Fatal("found no other layer of the same compressed size")
	}
	addr := lyingRegistry(t, map[string][]byte{goodDigest.String(): evilBytes})

	img, err := mutate.AppendLayers(empty.Image, good)
	if err != nil {
		t.Fatal(err)
	}
	img, _ = mutate.Config(img, v1.Config{Cmd: []string{"/file"}})
	pinned := pushTo(t, addr, "lying/base", img)

	// Right bytes, wrong diff ID in the config.
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	other := fileLayer(t, "other\n")
	goodDiff, _ := good.DiffID()
	cfg.RootFS.DiffIDs = []v1.Hash{goodDiff} // not other's
	other2, _ := mutate.AppendLayers(empty.Image, other)
	badCfg, err := mutate.ConfigFile(other2, cfg)
	if err != nil {
		t.Fatal(err)
	}
	badDiff := pushTo(t, addr, "lying/diffid", badCfg)
	otherDigest, _ := other.Digest()

	cases := []struct {
		name, ref string
		blob      v1.Hash
		want      []string
	}{
		{"digest", pinned, goodDigest, []string{pinned, goodDigest.String(), "checksum"}},
		// Named by its digest or by the diff ID the config claims for it.
		{"diffid", badDiff, otherDigest, []string{badDiff}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			root, ctx := t.TempDir(), t.TempDir()
			writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM scratch\nCOPY --from=" + c.ref + " /file /copied\n"})
			r := kilnRun(t, nil, nil, "--root", root, "build", "-t", "victim:1", ctx)
			mustFail(t, r, c.want...)
			if c.name == "diffid" && !strings.Contains(r.stderr, otherDigest.String()) && !strings.Contains(r.stderr, goodDiff.String()) {
				t.Errorf("the error names neither the layer %s nor the diff ID %s\n%s", otherDigest, goodDiff, r)
			}
			if c.name == "digest" && storeHasBlob(root, goodDigest) {
				t.Errorf("the store holds blob %s after the registry sent other bytes for it", goodDigest)
			}
			evil := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256Sum(evilBytes))}
			if storeHasBlob(root, evil) {
				t.Errorf("the lying registry's bytes landed in the store as %s", evil)
			}
			if r := kilnRun(t, nil, nil, "--root", root, "images", "-q"); strings.TrimSpace(r.stdout) != "" {
				t.Errorf("an image was stored after a failed verification:\n%s", r)
			}
		})
	}
	// The same reference served honestly builds (the test is not vacuous).
	t.Run("honest", func(t *testing.T) {
		t.Parallel()
		honest := lyingRegistry(t, nil)
		ref := pushTo(t, honest, "honest/base", img)
		root, ctx := t.TempDir(), t.TempDir()
		writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM scratch\nCOPY --from=" + ref + " /file /copied\n"})
		if r := kilnRun(t, nil, nil, "--root", root, "build", "-t", "victim:1", ctx); r.err != nil {
			t.Fatalf("%v\n%s", r.err, r)
		}
	})
}
