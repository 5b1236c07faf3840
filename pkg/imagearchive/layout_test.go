package imagearchive

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/kiln-build/kiln/internal/testutil"
)

// TestWriteLayoutConcurrentAndStaleTemps: writers to one layout take
// turns, so every ref each one adds is there at the end, and temporary
// files a killed writer left are removed.
func TestWriteLayoutConcurrentAndStaleTemps(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "out")
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	stale := []string{filepath.Join(blobs, ".kiln-tmp-blob-1"), filepath.Join(blobs, ".0123.tmp-42"), filepath.Join(dir, ".index.json.tmp-7")}
	for _, p := range stale {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const n = 4
	imgs := make([]v1.Image, n)
	for i := range imgs {
		imgs[i] = testutil.RandomImage(t, 1)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = WriteLayout(dir, []Item{{Ref: fmt.Sprintf("localhost/app:%d", i), Artifact: imgs[i]}})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	items, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != n {
		t.Fatalf("%d refs after %d writers: %+v", len(items), n, items)
	}
	for i, it := range items {
		if want := fmt.Sprintf("localhost/app:%d", i); it.Ref != want {
			t.Fatalf("item %d is %q, want %q", i, it.Ref, want)
		}
		testutil.SameImage(t, itemImage(t, it), imgs[i])
	}
	for _, p := range stale {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("stale temp %s still there (%v)", p, err)
		}
	}
	// A layout is for others to read, unlike kiln's private store.
	if fi, err := os.Stat(filepath.Join(dir, "index.json")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("index.json: %v, %v", fi, err)
	}
}

// TestReadStream: an archive that comes as a stream (load from stdin),
// plain or compressed, reads as the same archive in a file does; a stream
// that is no archive is an error naming the stream.
func TestReadStream(t *testing.T) {
	t.Parallel()
	img := testutil.RandomImage(t, 2)
	var plain bytes.Buffer
	if err := WriteOCIArchive(&plain, []Item{{Ref: "localhost/app:1", Artifact: img}}); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain.Bytes())
	zw.Close()
	for _, data := range [][]byte{plain.Bytes(), gz.Bytes()} {
		items, err := ReadStream(bytes.NewReader(data), "stdin")
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != 1 || items[0].Ref != "localhost/app:1" {
			t.Fatalf("read %+v", items)
		}
		testutil.SameImage(t, itemImage(t, items[0]), img)
	}
	if _, err := ReadStream(strings.NewReader("not an archive"), "stdin"); err == nil || !strings.Contains(err.Error(), "stdin") {
		t.Fatalf("garbage on stdin: %v", err)
	}
}
