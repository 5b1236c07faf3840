package security

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// fakeManifests serves the raw manifests given (repo:tag -> body) and
// counts blob requests; every blob is unknown.
func fakeManifests(t *testing.T, manifests map[string][]byte) (addr string, blobGets *atomic.Int64) {
	t.Helper()
	blobGets = &atomic.Int64{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/v2/")
		if r.URL.Path == "/v2/" {
			return
		}
		if i := strings.Index(p, "/manifests/"); i >= 0 {
			body, ok := manifests[p[:i]+":"+p[i+len("/manifests/"):]]
			if !ok {
				http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, http.StatusNotFound)
				return
			}
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			w.Header().Set("Docker-Content-Digest", fmt.Sprintf("sha256:%x", sha256.Sum256(body)))
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			if r.Method == http.MethodGet {
				w.Write(body)
			}
			return
		}
		if strings.Contains(p, "/blobs/") {
			blobGets.Add(1)
		}
		http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), blobGets
}

func manifestJSON(configSize int64, layerSizes ...int64) []byte {
	var layers []string
	for i, s := range layerSizes {
		layers = append(layers, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%064x","size":%d}`, i+1, s))
	}
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%064x","size":%d},"layers":[%s]}`,
		99, configSize, strings.Join(layers, ",")))
}

// TestInputRegistrySizeLimits (findings 9 and 11): what a registry sends
// before it can be verified is bounded: a manifest over the limit is
// refused (and --max-manifest-size raises the limit), a config the
// manifest says is 600 MB is refused before a byte of it is fetched
// (--max-config-size raises it), and negative sizes are refused.
func TestInputRegistrySizeLimits(t *testing.T) {
	t.Parallel()
	big := append(manifestJSON(10), bytes.Repeat([]byte(" "), 5<<20)...)
	addr, blobGets := fakeManifests(t, map[string][]byte{
		"big/image:1":   big,
		"huge/config:1": manifestJSON(600_000_000),
		"neg/layer:1":   manifestJSON(10, 100, -5),
		"neg/config:1":  manifestJSON(-1),
		"ok/small:1":    manifestJSON(10),
	})
	cases := []struct {
		ref  string
		args []string
		want []string
	}{
		{"big/image:1", nil, []string{"larger than", "--max-manifest-size"}},
		{"huge/config:1", nil, []string{"600000000", "--max-config-size"}},
		{"neg/layer:1", nil, []string{"negative size"}},
		{"neg/config:1", nil, []string{"negative size"}},
	}
	for _, c := range cases {
		t.Run(c.ref, func(t *testing.T) {
			t.Parallel()
			r := kilnRun(t, nil, nil, append([]string{"--root", t.TempDir(), "--retry", "0", "pull", addr + "/" + c.ref}, c.args...)...)
			mustFail(t, r, c.want...)
		})
	}
	t.Run("raised", func(t *testing.T) {
		t.Parallel()
		// Raised limits get past the size checks, to the missing blobs.
		r := kilnRun(t, nil, nil, "--root", t.TempDir(), "--retry", "0", "--max-manifest-size", "8MiB", "pull", addr+"/big/image:1")
		if r.err == nil || strings.Contains(r.stderr, "larger than") {
			t.Errorf("with --max-manifest-size 8MiB: want a failure past the size check\n%s", r)
		}
	})
	t.Cleanup(func() {
		// Only the small config of "raised" may have been asked for.
		if n := blobGets.Load(); n > 1 {
			t.Errorf("%d blob requests: a refused image's config or layers were fetched", n)
		}
	})
}

var (
	bombOnce sync.Once
	bombTar  []byte // gzip of a tar holding 300 MiB of zeros
)

// zeroBomb is a gzip tar of one 300 MiB file of zeros (about 300 KB).
func zeroBomb(t *testing.T) []byte {
	t.Helper()
	bombOnce.Do(func() {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		tw := tar.NewWriter(zw)
		const size = 300 << 20
		tw.WriteHeader(&tar.Header{Name: "zeros", Mode: 0o644, Size: size, Typeflag: tar.TypeReg})
		zero := make([]byte, 1<<20)
		for i := 0; i < size>>20; i++ {
			tw.Write(zero)
		}
		tw.Close()
		zw.Close()
		bombTar = buf.Bytes()
	})
	return bombTar
}

// TestInputDecompressionBomb (finding 9): a small gzip that expands more
// than the ratio limit beyond the first 256 MiB stops with a clear error,
// naming the flag that raises it: as an ADD archive, as a `build -`
// context and as an image layer read by COPY --from.
func TestInputDecompressionBomb(t *testing.T) {
	t.Parallel()
	bomb := zeroBomb(t)
	want := []string{"decompressed size limit exceeded", "--max-decompression-ratio"}
	t.Run("add", func(t *testing.T) {
		t.Parallel()
		ctx := t.TempDir()
		writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM scratch\nADD bomb.tar.gz /\n", "bomb.tar.gz": string(bomb)})
		mustFail(t, kilnRun(t, nil, nil, "--root", t.TempDir(), "build", ctx), want...)
	})
	t.Run("stdin", func(t *testing.T) {
		t.Parallel()
		mustFail(t, kilnRun(t, bytes.NewReader(bomb), nil, "--root", t.TempDir(), "build", "-"), want...)
	})
	t.Run("layer", func(t *testing.T) {
		t.Parallel()
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(bomb)), nil })
		if err != nil {
			t.Fatal(err)
		}
		img, err := mutate.AppendLayers(empty.Image, l)
		if err != nil {
			t.Fatal(err)
		}
		ref := pushTo(t, lyingRegistry(t, nil), "bomb/layer", img)
		ctx := t.TempDir()
		writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM scratch\nCOPY --from=" + ref + " /zeros /z\n"})
		root := t.TempDir()
		mustFail(t, kilnRun(t, nil, nil, "--root", root, "build", ctx), want...)
		d, _ := l.Digest()
		if storeHasBlob(root, d) {
			t.Errorf("the bomb layer %s was kept in the store", d)
		}
		if r := kilnRun(t, nil, []string{"KILN_MAX_DECOMPRESSION_RATIO=0"}, "--root", root, "build", ctx); r.err != nil {
			t.Errorf("with the limit off the build fails: %v\n%s", r.err, r)
		}
	})
}
