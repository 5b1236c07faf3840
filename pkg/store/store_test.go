package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/oci"
)

// Helper-process modes, selected by environment variable, for tests that
// need a second process on the same store.
const helperEnv = "KILN_STORE_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "tag":
		os.Exit(helperTag())
	case "killed-writer":
		helperKilledWriter()
	}
	fmt.Fprintln(os.Stderr, "unknown helper mode")
	os.Exit(2)
}

// helperTag tags KILN_N refs named KILN_PREFIX-<i> at KILN_DIGEST.
func helperTag() int {
	s, err := Open(os.Getenv("KILN_ROOT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	n, _ := strconv.Atoi(os.Getenv("KILN_N"))
	h, err := v1.NewHash(os.Getenv("KILN_DIGEST"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := range n {
		if err := s.Tag(fmt.Sprintf("%s-%d", os.Getenv("KILN_PREFIX"), i), v1.Descriptor{Digest: h}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// helperKilledWriter starts a blob, writes half of it and dies by SIGKILL.
func helperKilledWriter() {
	s, err := Open(os.Getenv("KILN_ROOT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	w, err := s.NewBlobWriter()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, err := w.Write([]byte(os.Getenv("KILN_DATA"))); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	time.Sleep(time.Minute)
	os.Exit(3)
}

func helperCmd(t *testing.T, mode string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + mode}, env...)...)
	return cmd
}

func newStore(t *testing.T, opts ...Option) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOpenCreatesLayout(t *testing.T) {
	root := filepath.Join(t.TempDir(), "nested", "store")
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if s.Root() != root {
		t.Fatalf("Root() = %q, want %q", s.Root(), root)
	}
	b, err := os.ReadFile(filepath.Join(root, "oci-layout"))
	if err != nil || string(b) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Fatalf("oci-layout = %q, %v", b, err)
	}
	for _, p := range []string{"index.json", "blobs/sha256", "tmp", "lock"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Fatalf("missing %s: %v", p, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(root, "index.json")); !strings.Contains(string(b), `"manifests":[]`) {
		t.Fatalf("index.json of a new store: %s", b)
	}
	if es, err := s.List(); err != nil || len(es) != 0 {
		t.Fatalf("List() of new store = %v, %v", es, err)
	}
	if _, err := Open(root); err != nil {
		t.Fatalf("reopening: %v", err)
	}

	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "oci-layout"), []byte("not json"), 0o644)
	if _, err := Open(bad); err == nil || !strings.Contains(err.Error(), "oci-layout") {
		t.Fatalf("Open with corrupt oci-layout: %v", err)
	}
	bad2 := t.TempDir()
	os.WriteFile(filepath.Join(bad2, "index.json"), []byte("{"), 0o644)
	if _, err := Open(bad2); err == nil || !strings.Contains(err.Error(), "index.json") {
		t.Fatalf("Open with corrupt index.json: %v", err)
	}
}

func TestBlobWriterCommit(t *testing.T) {
	s := newStore(t)
	data := []byte("hello, blob")
	want := sha256Hash(data)
	w, err := s.NewBlobWriter()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data[:5])
	w.Write(data[5:])
	if w.Size() != int64(len(data)) || w.Digest() != want {
		t.Fatalf("Size/Digest = %d %s, want %d %s", w.Size(), w.Digest(), len(data), want)
	}
	if s.HasBlob(want) {
		t.Fatal("blob visible before Commit")
	}
	if err := w.Commit(want); err != nil {
		t.Fatal(err)
	}
	if !s.HasBlob(want) {
		t.Fatal("blob missing after Commit")
	}
	if got := testutil.ReadAll(t, func() (io.ReadCloser, error) { return s.OpenBlob(want) }); !bytes.Equal(got, data) {
		t.Fatalf("blob content = %q", got)
	}
	if s.BlobPath(want) != filepath.Join(s.Root(), "blobs", "sha256", want.Hex) {
		t.Fatalf("BlobPath = %s", s.BlobPath(want))
	}
	if n := testutil.DirNames(t, filepath.Join(s.Root(), "tmp")); len(n) != 0 {
		t.Fatalf("tmp not empty after Commit: %v", n)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("Abort after Commit: %v", err)
	}
	if !s.HasBlob(want) {
		t.Fatal("Abort after Commit removed the blob")
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("Write after Commit succeeded")
	}
	if err := w.Commit(want); err == nil {
		t.Fatal("second Commit succeeded")
	}
}

func TestBlobWriterWrongDigest(t *testing.T) {
	s := newStore(t)
	w, err := s.NewBlobWriter()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("some content"))
	wrong := sha256Hash([]byte("other content"))
	err = w.Commit(wrong)
	if err == nil {
		t.Fatal("Commit with wrong digest succeeded")
	}
	if !strings.Contains(err.Error(), wrong.String()) || !strings.Contains(err.Error(), sha256Hash([]byte("some content")).String()) {
		t.Fatalf("error does not name both digests: %v", err)
	}
	if n := testutil.DirNames(t, s.blobDir); len(n) != 0 {
		t.Fatalf("blobs/sha256 not empty: %v", n)
	}
	if n := testutil.DirNames(t, s.tmpDir); len(n) != 0 {
		t.Fatalf("tmp not empty: %v", n)
	}
}

func TestBlobWriterAbort(t *testing.T) {
	s := newStore(t)
	w, err := s.NewBlobWriter()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("abandoned"))
	if n := testutil.DirNames(t, s.tmpDir); len(n) != 1 {
		t.Fatalf("tmp should hold the temp file: %v", n)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if n := testutil.DirNames(t, s.tmpDir); len(n) != 0 {
		t.Fatalf("tmp not empty after Abort: %v", n)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("second Abort: %v", err)
	}
}

func TestCommitAlreadyPresent(t *testing.T) {
	s := newStore(t)
	data := []byte("same bytes")
	h := sha256Hash(data)
	w1, _ := s.NewBlobWriter()
	w2, _ := s.NewBlobWriter()
	w1.Write(data)
	w2.Write(data)
	if err := w1.Commit(h); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-3 * time.Hour)
	os.Chtimes(s.BlobPath(h), old, old)
	if err := w2.Commit(h); err != nil {
		t.Fatal(err)
	}
	if n := testutil.DirNames(t, s.blobDir); len(n) != 1 {
		t.Fatalf("blobs: %v", n)
	}
	if n := testutil.DirNames(t, s.tmpDir); len(n) != 0 {
		t.Fatalf("tmp not empty: %v", n)
	}
	fi, _ := os.Stat(s.BlobPath(h))
	if time.Since(fi.ModTime()) > time.Minute {
		t.Fatalf("re-committed blob's mtime not refreshed: %v", fi.ModTime())
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("must not be read") }

func TestWriteBlob(t *testing.T) {
	s := newStore(t)
	data := []byte("write blob")
	h := sha256Hash(data)
	if err := s.WriteBlob(h, bytes.NewReader([]byte("not it"))); err == nil {
		t.Fatal("WriteBlob with wrong content succeeded")
	}
	if s.HasBlob(h) || len(testutil.DirNames(t, s.tmpDir)) != 0 {
		t.Fatal("failed WriteBlob left something behind")
	}
	if err := s.WriteBlob(h, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBlob(h, failingReader{}); err != nil {
		t.Fatalf("WriteBlob of a present blob read its input: %v", err)
	}
	if err := s.WriteBlob(sha256Hash([]byte("absent")), failingReader{}); err == nil || !strings.Contains(err.Error(), "must not be read") {
		t.Fatalf("WriteBlob did not report the read error: %v", err)
	}
}

func TestMalformedDigests(t *testing.T) {
	s := newStore(t)
	for _, h := range []v1.Hash{
		{Algorithm: "sha256", Hex: "../../../etc/passwd"},
		{Algorithm: "sha256", Hex: strings.Repeat("A", 64)},
		{Algorithm: "sha512", Hex: strings.Repeat("a", 128)},
		{},
	} {
		if s.HasBlob(h) {
			t.Errorf("HasBlob(%q) = true", h)
		}
		if p := s.BlobPath(h); p != "" {
			t.Errorf("BlobPath(%q) = %q", h, p)
		}
		if _, err := s.OpenBlob(h); err == nil {
			t.Errorf("OpenBlob(%q) succeeded", h)
		}
		if err := s.WriteBlob(h, strings.NewReader("")); err == nil {
			t.Errorf("WriteBlob(%q) succeeded", h)
		}
		if _, err := s.Image(h); err == nil {
			t.Errorf("Image(%q) succeeded", h)
		}
		if err := s.Tag("localhost/x:1", v1.Descriptor{Digest: h}); err == nil {
			t.Errorf("Tag to %q succeeded", h)
		}
	}
	if _, err := s.OpenBlob(sha256Hash([]byte("nope"))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenBlob of a missing blob: %v", err)
	}
}

// TestKilledWriter kills a process in the middle of a blob and checks that
// the next Open removes its temp file and that the blob never appears.
func TestKilledWriter(t *testing.T) {
	s := newStore(t)
	data := "half a blob"
	cmd := helperCmd(t, "killed-writer", "KILN_ROOT="+s.Root(), "KILN_DATA="+data)
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper did not die by SIGKILL: %v", err)
	}
	n := testutil.DirNames(t, s.tmpDir)
	if len(n) != 1 {
		t.Fatalf("the killed writer should have left one temp file: %v", n)
	}
	// Killed a while ago: brand-new unlocked temp files are left alone (a
	// writer may be between creating and locking one).
	if err := os.Chtimes(filepath.Join(s.tmpDir, n[0]), time.Now().Add(-time.Minute), time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if s.HasBlob(sha256Hash([]byte(data))) || len(testutil.DirNames(t, s.blobDir)) != 0 {
		t.Fatal("killed writer's data visible as a blob")
	}
	// A live writer's temp file must survive the cleaning.
	live, err := s.NewBlobWriter()
	if err != nil {
		t.Fatal(err)
	}
	live.Write([]byte("live"))
	if _, err := Open(s.Root()); err != nil {
		t.Fatal(err)
	}
	if n := testutil.DirNames(t, s.tmpDir); len(n) != 1 || !strings.HasPrefix(n[0], tempPrefix) {
		t.Fatalf("after Open, tmp should hold only the live writer's file: %v", n)
	}
	if err := live.Commit(sha256Hash([]byte("live"))); err != nil {
		t.Fatalf("live writer could not commit after a concurrent Open: %v", err)
	}
	if n := testutil.DirNames(t, s.tmpDir); len(n) != 0 {
		t.Fatalf("tmp not empty: %v", n)
	}
	// A stale index.json.tmp (a Tag killed mid-write) goes too, and
	// index.json is intact.
	os.WriteFile(filepath.Join(s.Root(), indexTempFile), []byte("{garbage"), 0o644)
	s2, err := Open(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Root(), indexTempFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale index.json.tmp not removed: %v", err)
	}
	if _, err := s2.List(); err != nil {
		t.Fatal(err)
	}
}

func TestLayerDecompression(t *testing.T) {
	s := newStore(t)
	payload := make([]byte, 100_000)
	rand.Read(payload)
	diffID := sha256Hash(payload)

	var gz, zs bytes.Buffer
	gw, _ := gzipWriter(&gz)
	gw.Write(payload)
	gw.Close()
	zw, _ := zstdWriter(&zs)
	zw.Write(payload)
	zw.Close()

	for _, tc := range []struct {
		mt   types.MediaType
		blob []byte
	}{
		{types.OCILayer, gz.Bytes()},
		{types.DockerLayer, gz.Bytes()},
		{types.OCILayerZStd, zs.Bytes()},
		{types.OCIUncompressedLayer, payload},
		{"application/vnd.example.unknown", zs.Bytes()},
	} {
		h := sha256Hash(tc.blob)
		if err := s.WriteBlob(h, bytes.NewReader(tc.blob)); err != nil {
			t.Fatal(err)
		}
		desc := v1.Descriptor{MediaType: tc.mt, Digest: h, Size: int64(len(tc.blob)), Annotations: map[string]string{"a": "b"}}
		l, err := s.Layer(desc, diffID)
		if err != nil {
			t.Fatal(err)
		}
		if got := testutil.ReadAll(t, l.Uncompressed); !bytes.Equal(got, payload) {
			t.Errorf("%s: Uncompressed differs", tc.mt)
		}
		if got := testutil.ReadAll(t, l.Compressed); !bytes.Equal(got, tc.blob) {
			t.Errorf("%s: Compressed differs", tc.mt)
		}
		if d, _ := l.Digest(); d != h {
			t.Errorf("%s: Digest = %s", tc.mt, d)
		}
		if d, _ := l.DiffID(); d != diffID {
			t.Errorf("%s: DiffID = %s", tc.mt, d)
		}
		if sz, _ := l.Size(); sz != int64(len(tc.blob)) {
			t.Errorf("%s: Size = %d", tc.mt, sz)
		}
		if mt, _ := l.MediaType(); mt != tc.mt {
			t.Errorf("MediaType = %s, want %s", mt, tc.mt)
		}
	}
	if l, err := s.Layer(v1.Descriptor{MediaType: types.OCILayer, Digest: sha256Hash(gz.Bytes())}, diffID); err != nil {
		t.Fatal(err)
	} else if sz, _ := l.Size(); sz != int64(gz.Len()) {
		t.Fatalf("Size of a layer described without one = %d, want %d", sz, gz.Len())
	}
	if _, err := s.Layer(v1.Descriptor{MediaType: types.OCILayer, Digest: sha256Hash(gz.Bytes()), Size: 3}, diffID); err == nil {
		t.Fatal("Layer with a wrong size succeeded")
	}
	if _, err := s.Layer(v1.Descriptor{MediaType: types.OCILayer, Digest: sha256Hash([]byte("absent"))}, diffID); err == nil {
		t.Fatal("Layer of a missing blob succeeded")
	}
	// A gzip media type on bytes that are not gzip is an error, not a panic.
	h := sha256Hash(payload)
	l, _ := s.Layer(v1.Descriptor{MediaType: types.OCILayer, Digest: h, Size: int64(len(payload))}, diffID)
	if _, err := l.Uncompressed(); err == nil {
		t.Fatal("Uncompressed of non-gzip data as gzip succeeded")
	}
}

func TestWriteImageRoundTrip(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	for _, img := range []v1.Image{
		testutil.RandomImage(t, 3),
		mutate.MediaType(mutate.ConfigMediaType(testutil.RandomImage(t, 2), types.OCIConfigJSON), types.OCIManifestSchema1),
		testutil.RandomImage(t, 0),
	} {
		desc, err := s.WriteImage(ctx, img)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := img.RawManifest()
		mt, _ := img.MediaType()
		if desc.Digest != testutil.Digest(t, img) || desc.Size != int64(len(raw)) || desc.MediaType != mt {
			t.Fatalf("descriptor %+v does not describe the image", desc)
		}
		if desc.Platform == nil || desc.Platform.OS != "linux" || desc.Platform.Architecture != "amd64" {
			t.Fatalf("descriptor platform %+v", desc.Platform)
		}
		got, err := s.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		gotRaw, _ := got.RawManifest()
		if !bytes.Equal(gotRaw, raw) {
			t.Fatal("stored manifest bytes differ")
		}
		if testutil.Digest(t, got) != desc.Digest {
			t.Fatal("digest differs")
		}
		wantCfg, _ := img.RawConfigFile()
		gotCfg, _ := got.RawConfigFile()
		if !bytes.Equal(wantCfg, gotCfg) {
			t.Fatal("config differs")
		}
		wantLayers, _ := img.Layers()
		gotLayers, _ := got.Layers()
		if len(wantLayers) != len(gotLayers) {
			t.Fatalf("%d layers, want %d", len(gotLayers), len(wantLayers))
		}
		for i := range wantLayers {
			if _, ok := gotLayers[i].(*oci.BlobLayer); !ok {
				t.Fatalf("layer %d is a %T, not a store layer", i, gotLayers[i])
			}
			if !bytes.Equal(testutil.ReadAll(t, wantLayers[i].Compressed), testutil.ReadAll(t, gotLayers[i].Compressed)) {
				t.Fatalf("layer %d compressed bytes differ", i)
			}
			wd, _ := wantLayers[i].DiffID()
			gd, _ := gotLayers[i].DiffID()
			if wd != gd {
				t.Fatalf("layer %d diff ID %s, want %s", i, gd, wd)
			}
		}
		if err := validate.Image(got); err != nil {
			t.Fatalf("stored image does not validate: %v", err)
		}
		d2, err := s.Descriptor(desc.Digest)
		if err != nil || d2.MediaType != desc.MediaType || d2.Size != desc.Size || d2.Platform == nil {
			t.Fatalf("Descriptor = %+v, %v; want %+v", d2, err, desc)
		}
		if _, err := s.Index(desc.Digest); err == nil {
			t.Fatal("Index of an image succeeded")
		}
		cfgName, _ := img.ConfigName()
		if d, err := s.Descriptor(cfgName); err == nil {
			t.Fatalf("Descriptor of a config blob = %+v", d)
		}
		if _, err := s.Image(cfgName); err == nil {
			t.Fatal("Image of a config blob succeeded")
		}
	}
	if n := testutil.DirNames(t, s.tmpDir); len(n) != 0 {
		t.Fatalf("tmp not empty: %v", n)
	}
}

// brokenImage is an image whose layers cannot be read.
type brokenImage struct{ v1.Image }

type brokenLayer struct{ v1.Layer }

func (brokenLayer) Compressed() (io.ReadCloser, error) {
	return nil, errors.New("Compressed called on a layer the store has")
}

func (i brokenImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := i.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return brokenLayer{l}, nil
}

func (i brokenImage) Layers() ([]v1.Layer, error) {
	ls, err := i.Image.Layers()
	for n := range ls {
		ls[n] = brokenLayer{ls[n]}
	}
	return ls, err
}

func TestWriteImageSkipsPresentLayers(t *testing.T) {
	ctx := context.Background()
	img := testutil.RandomImage(t, 2)
	fresh := newStore(t)
	if _, err := fresh.WriteImage(ctx, brokenImage{img}); err == nil || !strings.Contains(err.Error(), "Compressed called") {
		t.Fatalf("broken image written to an empty store: %v", err)
	}
	if n := testutil.DirNames(t, fresh.tmpDir); len(n) != 0 {
		t.Fatalf("failed WriteImage left temp files: %v", n)
	}
	m, _ := img.Manifest()
	if fresh.HasBlob(testutil.Digest(t, img)) || fresh.HasBlob(m.Config.Digest) {
		t.Fatal("failed WriteImage stored the manifest or config")
	}

	s := newStore(t)
	for _, l := range m.Layers {
		layer, _ := img.LayerByDigest(l.Digest)
		rc, _ := layer.Compressed()
		if err := s.WriteBlob(l.Digest, rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
	}
	desc, err := s.WriteImage(ctx, brokenImage{img})
	if err != nil {
		t.Fatalf("WriteImage read a layer the store has: %v", err)
	}
	if desc.Digest != testutil.Digest(t, img) {
		t.Fatal("wrong digest")
	}
	if err := s.Tag("localhost/skip:1", desc); err != nil {
		t.Fatal(err)
	}
}

func TestWriteImageCancelled(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	img := testutil.RandomImage(t, 2)
	if _, err := s.WriteImage(ctx, img); !errors.Is(err, context.Canceled) {
		t.Fatalf("WriteImage with cancelled context: %v", err)
	}
	if s.HasBlob(testutil.Digest(t, img)) {
		t.Fatal("manifest stored despite cancellation")
	}
}

func TestWriteIndexRoundTrip(t *testing.T) {
	s := newStore(t)
	idx, err := random.Index(128, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := s.WriteIndex(context.Background(), idx)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != testutil.Digest(t, idx) || !desc.MediaType.IsIndex() {
		t.Fatalf("descriptor %+v", desc)
	}
	got, err := s.Index(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := idx.RawManifest()
	gotRaw, _ := got.RawManifest()
	if !bytes.Equal(want, gotRaw) {
		t.Fatal("index bytes differ")
	}
	if err := validate.Index(got); err != nil {
		t.Fatalf("stored index does not validate: %v", err)
	}
	im, _ := got.IndexManifest()
	if len(im.Manifests) != 3 {
		t.Fatalf("%d children", len(im.Manifests))
	}
	child, err := got.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := got.Image(sha256Hash([]byte("stranger"))); err == nil {
		t.Fatal("Index.Image of a non-child succeeded")
	}
	if id, err := s.ImageID(desc); err != nil || id != desc.Digest {
		t.Fatalf("ImageID(index) = %s, %v", id, err)
	}
	cfgName, _ := child.ConfigName()
	if id, err := s.ImageID(im.Manifests[0]); err != nil || id != cfgName {
		t.Fatalf("ImageID(child) = %s, %v; want %s", id, err, cfgName)
	}
	if d, err := s.Descriptor(desc.Digest); err != nil || d.MediaType != desc.MediaType {
		t.Fatalf("Descriptor(index) = %+v, %v", d, err)
	}
	if _, err := s.Image(desc.Digest); err == nil {
		t.Fatal("Image of an index succeeded")
	}
	if _, err := s.WriteImage(context.Background(), child); err != nil {
		t.Fatal(err)
	}
}

func TestTagListUntag(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	a, _ := s.WriteImage(ctx, testutil.RandomImage(t, 1))
	b, _ := s.WriteImage(ctx, testutil.RandomImage(t, 1))
	if err := s.Tag("localhost/app:1.0", a); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("registry.example.com/team/app:build_1", v1.Descriptor{Digest: b.Digest}); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("localhost/app:1.0", b); err != nil { // move
		t.Fatal(err)
	}
	es, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[0].Ref != "localhost/app:1.0" || es[1].Ref != "registry.example.com/team/app:build_1" {
		t.Fatalf("List = %+v", es)
	}
	for _, e := range es {
		if e.Descriptor.Digest != b.Digest || e.Descriptor.MediaType != b.MediaType || e.Descriptor.Size != b.Size {
			t.Fatalf("entry %+v, want digest %s", e, b.Digest)
		}
		if _, ok := e.Descriptor.Annotations[oci.AnnotationRefName]; ok {
			t.Fatal("List leaks the ref annotation")
		}
	}
	// index.json is a valid OCI index with the annotation.
	raw, _ := os.ReadFile(filepath.Join(s.Root(), "index.json"))
	if !strings.Contains(string(raw), `"org.opencontainers.image.ref.name":"localhost/app:1.0"`) {
		t.Fatalf("index.json: %s", raw)
	}
	if err := s.Untag("localhost/app:1.0"); err != nil {
		t.Fatal(err)
	}
	if err := s.Untag("localhost/app:1.0"); err == nil || !strings.Contains(err.Error(), "localhost/app:1.0") {
		t.Fatalf("Untag of an unknown ref: %v", err)
	}
	if es, _ := s.List(); len(es) != 1 {
		t.Fatalf("List after Untag = %+v", es)
	}
	for _, bad := range []string{"", "has space", "new\nline"} {
		if err := s.Tag(bad, a); err == nil {
			t.Errorf("Tag(%q) succeeded", bad)
		}
	}
	if err := s.Tag("localhost/none:1", v1.Descriptor{Digest: sha256Hash([]byte("absent"))}); err == nil {
		t.Fatal("Tag of a missing manifest succeeded")
	}
	if err := s.Tag("localhost/size:1", v1.Descriptor{Digest: a.Digest, Size: a.Size + 1}); err == nil {
		t.Fatal("Tag with a wrong size succeeded")
	}
}

// TestTagUnchangedWritesNothing: tagging a ref with the descriptor it
// already has (a rebuild of the same image) leaves index.json as it is
// (no new file, so no fsync); any change still replaces it.
func TestTagUnchangedWritesNothing(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	a, _ := s.WriteImage(ctx, testutil.RandomImage(t, 1))
	b, _ := s.WriteImage(ctx, testutil.RandomImage(t, 1))
	index := filepath.Join(s.Root(), "index.json")
	inode := func() uint64 {
		t.Helper()
		fi, err := os.Stat(index)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	if err := s.Tag("localhost/app:1", a); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("localhost/app:2", b); err != nil {
		t.Fatal(err)
	}
	before := inode()
	raw, _ := os.ReadFile(index)
	for _, c := range []struct {
		ref string
		d   v1.Descriptor
	}{{"localhost/app:1", a}, {"localhost/app:2", v1.Descriptor{Digest: b.Digest}}, {"localhost/app:1", a}} {
		if err := s.Tag(c.ref, c.d); err != nil {
			t.Fatal(err)
		}
		if got := inode(); got != before {
			t.Fatalf("Tag(%s) to what it names already replaced index.json (inode %d, was %d)", c.ref, got, before)
		}
	}
	if now, _ := os.ReadFile(index); !bytes.Equal(now, raw) {
		t.Fatalf("index.json changed: %s, was %s", now, raw)
	}
	// A move, a new ref and an untag each replace it.
	for i, change := range []func() error{
		func() error { return s.Tag("localhost/app:1", b) },
		func() error { return s.Tag("localhost/app:3", a) },
		func() error { return s.Untag("localhost/app:2") },
	} {
		if err := change(); err != nil {
			t.Fatal(err)
		}
		if got := inode(); got == before {
			t.Fatalf("change %d left index.json as it was", i)
		} else {
			before = got
		}
	}
	es, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[0].Ref != "localhost/app:1" || es[0].Descriptor.Digest != b.Digest || es[1].Ref != "localhost/app:3" || es[1].Descriptor.Digest != a.Digest {
		t.Fatalf("List = %+v", es)
	}
}

func TestTagRefusesPartialImage(t *testing.T) {
	s := newStore(t)
	img := testutil.RandomImage(t, 2)
	d, err := s.WriteImage(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	os.Remove(s.BlobPath(m.Layers[1].Digest))
	err = s.Tag("localhost/partial:1", d)
	if err == nil || !strings.Contains(err.Error(), m.Layers[1].Digest.Hex) || !strings.Contains(err.Error(), "localhost/partial:1") {
		t.Fatalf("Tag of a partial image: %v", err)
	}
	if es, _ := s.List(); len(es) != 0 {
		t.Fatalf("partial image tagged: %+v", es)
	}
}

func TestConcurrentTagGoroutines(t *testing.T) {
	root := t.TempDir()
	s, _ := Open(root)
	d, err := s.WriteImage(context.Background(), testutil.RandomImage(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := s
			if i%2 == 1 { // half through separate Store values
				var err error
				if st, err = Open(root); err != nil {
					errs <- err
					return
				}
			}
			errs <- st.Tag(fmt.Sprintf("localhost/g:%d", i), d)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	es, _ := s.List()
	if len(es) != n {
		t.Fatalf("%d refs after %d concurrent Tags", len(es), n)
	}
}

func TestConcurrentTagProcesses(t *testing.T) {
	s := newStore(t)
	d, err := s.WriteImage(context.Background(), testutil.RandomImage(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	const n = 25
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for p := range 2 {
		cmd := helperCmd(t, "tag", "KILN_ROOT="+s.Root(), "KILN_N="+strconv.Itoa(n),
			"KILN_DIGEST="+d.Digest.String(), fmt.Sprintf("KILN_PREFIX=localhost/p%d:t", p))
		var out bytes.Buffer
		cmd.Stderr = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		outs = append(outs, &out)
	}
	for i := range n { // and this process too
		if err := s.Tag(fmt.Sprintf("localhost/self:%d", i), d); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("helper %d: %v: %s", i, err, outs[i])
		}
	}
	es, _ := s.List()
	if len(es) != 3*n {
		t.Fatalf("%d refs, want %d", len(es), 3*n)
	}
}

// imagesWithSharedPrefix makes two images such that a 4-digit hex prefix
// of a digest (manifest or ID) of one equals one of the other's.
func imagesWithSharedPrefix(t *testing.T) (a, b v1.Image, prefix string) {
	t.Helper()
	seen := map[string]v1.Image{}
	base := testutil.RandomImage(t, 0)
	for i := 0; i < 100000; i++ {
		cf, _ := base.ConfigFile()
		cf = cf.DeepCopy()
		cf.Config.Env = []string{fmt.Sprintf("N=%d", i)}
		img, err := mutate.ConfigFile(base, cf)
		if err != nil {
			t.Fatal(err)
		}
		md := testutil.Digest(t, img)
		id, _ := img.ConfigName()
		for _, h := range []string{md.Hex[:4], id.Hex[:4]} {
			if other, ok := seen[h]; ok && other != img {
				return other, img, h
			}
		}
		seen[md.Hex[:4]] = img
		seen[id.Hex[:4]] = img
	}
	t.Fatal("no shared prefix found")
	return nil, nil, ""
}

func TestResolve(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	a, b, prefix := imagesWithSharedPrefix(t)
	da, err := s.WriteImage(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := s.WriteImage(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	s.Tag("localhost/a:1", da)
	s.Tag("localhost/b:1", db)
	idA, _ := a.ConfigName()
	if id, err := s.ImageID(da); err != nil || id != idA {
		t.Fatalf("ImageID = %s, %v; want %s", id, err, idA)
	}

	idx, _ := random.Index(64, 1, 2)
	di, err := s.WriteIndex(ctx, idx)
	if err != nil {
		t.Fatal(err)
	}
	s.Tag("localhost/multi:1", di)
	im, _ := idx.IndexManifest()

	for _, tc := range []struct {
		in   string
		want v1.Hash
	}{
		{"localhost/a:1", da.Digest},
		{"localhost/b:1", db.Digest},
		{da.Digest.String(), da.Digest},
		{da.Digest.Hex, da.Digest},
		{"sha256:" + da.Digest.Hex[:12], da.Digest},
		{idA.String(), da.Digest},
		{idA.Hex[:12], da.Digest},
		{strings.ToUpper(idA.Hex[:12]), da.Digest},
		{di.Digest.Hex[:10], di.Digest},
		{im.Manifests[1].Digest.String(), im.Manifests[1].Digest}, // untagged child
	} {
		d, err := s.Resolve(tc.in)
		if err != nil {
			t.Errorf("Resolve(%q): %v", tc.in, err)
			continue
		}
		if d.Digest != tc.want {
			t.Errorf("Resolve(%q) = %s, want %s", tc.in, d.Digest, tc.want)
		}
		if d.MediaType == "" || d.Size == 0 {
			t.Errorf("Resolve(%q) gave an incomplete descriptor %+v", tc.in, d)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{prefix, "ambiguous"},
		{"sha256:" + prefix, "ambiguous"},
		{"abc", "at least 4"},
		{"localhost/missing:1", "no image"},
		{strings.Repeat("0", 64), "no image"},
	} {
		_, err := s.Resolve(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.in)) {
			t.Errorf("Resolve(%q) error = %v, want %q naming the input", tc.in, err, tc.want)
		}
	}
}

func blobSet(t *testing.T, s *Store) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, n := range testutil.DirNames(t, s.blobDir) {
		out[n] = true
	}
	return out
}

// imageBlobs lists the blobs of an image: manifest, config, layers.
func imageBlobs(t *testing.T, img v1.Image) []string {
	t.Helper()
	m, _ := img.Manifest()
	out := []string{testutil.Digest(t, img).Hex, m.Config.Digest.Hex}
	for _, l := range m.Layers {
		out = append(out, l.Digest.Hex)
	}
	return out
}

func TestGC(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	keep := testutil.RandomImage(t, 2)
	// drop shares keep's first layer and has one of its own.
	keepLayers, _ := keep.Layers()
	own, _ := random.Layer(300, types.DockerLayer)
	drop, err := mutate.AppendLayers(testutil.RandomImage(t, 0), keepLayers[0], own)
	if err != nil {
		t.Fatal(err)
	}
	idx, _ := random.Index(64, 1, 2)

	dk, _ := s.WriteImage(ctx, keep)
	dd, _ := s.WriteImage(ctx, drop)
	di, _ := s.WriteIndex(ctx, idx)
	s.Tag("localhost/keep:1", dk)
	s.Tag("localhost/drop:1", dd)
	s.Tag("localhost/idx:1", di)
	stray := []byte("a stray blob")
	s.WriteBlob(sha256Hash(stray), bytes.NewReader(stray))

	if n, _, err := s.GC(ctx); err != nil || n != 0 {
		t.Fatalf("GC with default grace removed %d fresh blobs (%v)", n, err)
	}
	if err := s.Untag("localhost/drop:1"); err != nil {
		t.Fatal(err)
	}
	before := blobSet(t, s)
	wantGone := map[string]bool{sha256Hash(stray).Hex: true}
	for _, h := range imageBlobs(t, drop) {
		wantGone[h] = true
	}
	for _, h := range imageBlobs(t, keep) {
		delete(wantGone, h) // the shared layer stays
	}
	var wantFreed int64
	for h := range wantGone {
		fi, err := os.Stat(filepath.Join(s.blobDir, h))
		if err != nil {
			t.Fatal(err)
		}
		wantFreed += fi.Size()
	}
	removed, freed, err := s.GCWithGrace(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	after := blobSet(t, s)
	for h := range before {
		if wantGone[h] == after[h] {
			t.Errorf("blob %s: present after GC = %v, want %v", h, after[h], !wantGone[h])
		}
	}
	if removed != len(wantGone) {
		t.Fatalf("removed = %d, want %d", removed, len(wantGone))
	}
	if freed != wantFreed {
		t.Fatalf("freed = %d, want %d", freed, wantFreed)
	}
	for _, ref := range []string{"localhost/keep:1", "localhost/idx:1"} {
		d, err := s.Resolve(ref)
		if err != nil {
			t.Fatal(err)
		}
		if d.MediaType.IsIndex() {
			x, _ := s.Index(d.Digest)
			if err := validate.Index(x); err != nil {
				t.Fatalf("%s broken by GC: %v", ref, err)
			}
		} else {
			img, _ := s.Image(d.Digest)
			if err := validate.Image(img); err != nil {
				t.Fatalf("%s broken by GC: %v", ref, err)
			}
		}
	}
	if n, _, _ := s.GCWithGrace(ctx, 0); n != 0 {
		t.Fatalf("second GC removed %d", n)
	}
}

func TestGCGraceAndExclusion(t *testing.T) {
	s := newStore(t)
	data := []byte("unreferenced")
	h := sha256Hash(data)
	s.WriteBlob(h, bytes.NewReader(data))
	if n, _, _ := s.GCWithGrace(context.Background(), time.Hour); n != 0 || !s.HasBlob(h) {
		t.Fatal("GC removed a blob younger than the grace period")
	}
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(s.BlobPath(h), old, old)
	// Reusing an old blob (WriteBlob finds it present) refreshes it.
	if err := s.WriteBlob(h, failingReader{}); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := s.GCWithGrace(context.Background(), time.Hour); n != 0 {
		t.Fatal("GC removed a blob a writer had just reused")
	}
	os.Chtimes(s.BlobPath(h), old, old)

	// While a writer holds the commit lock GC waits.
	lk, err := lockFile(s.lockPath, 1 /* LOCK_SH */)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, _, err := s.GCWithGrace(ctx, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GC did not wait for the writer's lock: %v", err)
	}
	lk.unlock()
	if n, freed, err := s.GCWithGrace(context.Background(), time.Hour); err != nil || n != 1 || freed != int64(len(data)) {
		t.Fatalf("GC = %d, %d, %v; want 1, %d", n, freed, err, len(data))
	}
}

func TestListSorted(t *testing.T) {
	s := newStore(t)
	d, _ := s.WriteImage(context.Background(), testutil.RandomImage(t, 0))
	refs := []string{"zz/z:1", "aa/a:1", "localhost/m:2", "localhost/m:10"}
	for _, r := range refs {
		if err := s.Tag(r, d); err != nil {
			t.Fatal(err)
		}
	}
	es, _ := s.List()
	var got []string
	for _, e := range es {
		got = append(got, e.Ref)
	}
	sort.Strings(refs)
	if strings.Join(got, " ") != strings.Join(refs, " ") {
		t.Fatalf("List order %v, want %v", got, refs)
	}
}

func TestConcurrentWriteSameImage(t *testing.T) {
	root := t.TempDir()
	img := testutil.RandomImage(t, 3)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(root)
			if err != nil {
				errs <- err
				return
			}
			_, err = s.WriteImage(context.Background(), img)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	s, _ := Open(root)
	if n := len(testutil.DirNames(t, s.blobDir)); n != 5 {
		t.Fatalf("%d blobs, want 5 (manifest, config, 3 layers)", n)
	}
	if n := testutil.DirNames(t, s.tmpDir); len(n) != 0 {
		t.Fatalf("tmp not empty: %v", n)
	}
	got, err := s.Image(testutil.Digest(t, img))
	if err != nil {
		t.Fatal(err)
	}
	testutil.SameImage(t, got, img)
}

// TestGCRacingWriters runs GC without a grace period in a loop while images
// are written and tagged. Some Tags may then fail (their blobs were
// collected before the ref existed), but no ref may ever name an incomplete
// image. With the default grace period every Tag succeeds.
func TestGCRacingWriters(t *testing.T) {
	for _, grace := range []time.Duration{0, DefaultGCGrace} {
		s := newStore(t)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		gcs := 0
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, _, err := s.GCWithGrace(ctx, grace); err != nil && ctx.Err() == nil {
					t.Error(err)
					return
				}
				gcs++
				time.Sleep(time.Millisecond)
			}
		}()
		failed := 0
		for i := range 12 {
			img := testutil.RandomImage(t, 2)
			d, err := s.WriteImage(context.Background(), img)
			if err == nil {
				err = s.Tag(fmt.Sprintf("localhost/race:%d", i), d)
			}
			if err != nil {
				if grace != 0 || !strings.Contains(err.Error(), "not in") {
					t.Errorf("grace %v: %v", grace, err)
				}
				failed++
			}
		}
		cancel()
		wg.Wait()
		es, err := s.List()
		if err != nil {
			t.Fatal(err)
		}
		if len(es)+failed != 12 {
			t.Fatalf("grace %v: %d refs + %d failures != 12", grace, len(es), failed)
		}
		for _, e := range es {
			img, err := s.Image(e.Descriptor.Digest)
			if err != nil {
				t.Fatalf("grace %v: %s: %v", grace, e.Ref, err)
			}
			if err := validate.Image(img); err != nil {
				t.Fatalf("grace %v: %s is incomplete: %v", grace, e.Ref, err)
			}
		}
		t.Logf("grace %v: %d GC runs, %d of 12 tags failed", grace, gcs, failed)
	}
}

// TestShortLivedDir: a held directory survives cleaners however old it
// is; release removes it; an abandoned (unlocked) one goes at the next
// Open.
func TestShortLivedDir(t *testing.T) {
	s := newStore(t)
	d, release, err := s.ShortLivedDir()
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(d)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("mode %v, want 0700", fi.Mode().Perm())
	}
	if err := os.WriteFile(filepath.Join(d, "secret"), []byte("x"), 0o400); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(d, old, old)
	if _, err := Open(s.Root()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d, "secret")); err != nil {
		t.Fatalf("a cleaner removed a held directory: %v", err)
	}
	release()
	if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("release left %s", d)
	}

	// Abandoned: made, then its lock dropped without removing it.
	d2, release2, err := s.ShortLivedDir()
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), "keep")
	os.Rename(d2, tmp) // take it out of release's reach
	release2()
	os.Rename(tmp, d2)
	os.Chtimes(d2, old, old)
	if _, err := Open(s.Root()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d2); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an abandoned directory survived Open")
	}
}

// WalkImages visits each image the refs name once, an index's children
// included, whichever refs name it, and DiffIDStacks reads the same walk.
func TestWalkImages(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	idx, err := random.Index(128, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	idesc, err := s.WriteIndex(ctx, idx)
	if err != nil {
		t.Fatal(err)
	}
	img := testutil.RandomImage(t, 3)
	desc, err := s.WriteImage(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	for ref, d := range map[string]v1.Descriptor{"a:1": idesc, "b:1": desc, "b:2": desc} {
		if err := s.Tag(ref, d); err != nil {
			t.Fatal(err)
		}
	}
	want := map[v1.Hash]int{}
	im, _ := idx.IndexManifest()
	for _, c := range im.Manifests {
		child, err := idx.Image(c.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := child.ConfigFile()
		want[cfg.RootFS.DiffIDs[0]] = 2
	}
	cfg, _ := img.ConfigFile()
	want[cfg.RootFS.DiffIDs[0]] = 3
	got := map[v1.Hash]int{}
	if err := s.WalkImages(func(_ v1.Image, cfg *v1.ConfigFile) {
		got[cfg.RootFS.DiffIDs[0]] = len(cfg.RootFS.DiffIDs)
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || !reflect.DeepEqual(got, want) {
		t.Fatalf("walked %v, want %v", got, want)
	}
	stacks, err := s.DiffIDStacks()
	if err != nil || len(stacks) != 3 {
		t.Fatalf("DiffIDStacks = %d stacks, %v; want 3", len(stacks), err)
	}
	for _, st := range stacks {
		if want[st[0]] != len(st) {
			t.Fatalf("stack %v not one of the images", st)
		}
	}
}
