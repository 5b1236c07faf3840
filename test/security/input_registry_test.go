package security

import (
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// TestInputRegistryTrickle (finding 11): a registry that sends a layer one
// byte at a time, slowly enough never to be silent for a whole
// --registry-timeout, no longer holds a pull forever: too little progress
// within the timeout cuts the request.
func TestInputRegistryTrickle(t *testing.T) {
	t.Parallel()
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/trickle/blobs/") && !strings.HasSuffix(r.URL.Path, "/uploads/") {
			w.WriteHeader(http.StatusOK)
			for {
				if _, err := w.Write([]byte{0}); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(500 * time.Millisecond):
				}
			}
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	img, err := mutate.AppendLayers(empty.Image, fileLayer(t, "slow\n"))
	if err != nil {
		t.Fatal(err)
	}
	ref := pushTo(t, addr, "trickle", img)
	r := kilnRunTimeout(t, 2*time.Minute, nil, nil, "--root", t.TempDir(), "--retry", "0", "--registry-timeout", "2s", "pull", ref)
	mustFail(t, r, "stalled")
	if strings.Contains(r.String(), "timed out after") {
		t.Fatalf("kiln was still pulling from a trickling registry after 2 minutes")
	}
}

// TestInputOverlayLayerLimit (finding 11): a base with more layers than an
// overlay mount takes fails a RUN up front, before any layer is unpacked.
func TestInputOverlayLayerLimit(t *testing.T) {
	t.Parallel()
	var layers []v1.Layer
	for i := 0; i < 501; i++ {
		layers = append(layers, fileLayer(t, strings.Repeat("x", i)))
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	ref := pushTo(t, lyingRegistry(t, nil), "many/layers", img)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM " + ref + "\nRUN true\n"})
	root := t.TempDir()
	r := kilnRun(t, nil, nil, "--root", root, "build", ctx)
	if strings.Contains(r.stderr, "no sandbox") || strings.Contains(r.stderr, "isolation: chroot") {
		t.Skipf("no overlay sandbox here:\n%s", r)
	}
	mustFail(t, r, "501 layers", "at most 500")
	if n := unpackedLayers(t, root); n > 0 {
		t.Errorf("%d layers were unpacked before the limit was checked\n%s", n, r)
	}
}

// unpackedLayers counts the unpacked layer directories (named by a chain
// ID: 64 hex digits) in the store at root, outside its blobs.
func unpackedLayers(t *testing.T, root string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "blobs" {
			return filepath.SkipDir
		}
		if d.IsDir() && len(d.Name()) == 64 && strings.Trim(d.Name(), "0123456789abcdef") == "" {
			n++
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
