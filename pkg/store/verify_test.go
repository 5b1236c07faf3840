package store

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"

	"github.com/kiln-build/kiln/internal/testutil"
)

// remoteLayer is a gzip layer the store does not hold (as a registry's).
type remoteLayer struct {
	v1.Layer
	blob   []byte
	digest v1.Hash
	size   int64
	body   io.ReadCloser // when set, what Compressed returns
}

func (l remoteLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l remoteLayer) Size() (int64, error)                { return l.size, nil }
func (l remoteLayer) MediaType() (types.MediaType, error) { return types.DockerLayer, nil }
func (l remoteLayer) Compressed() (io.ReadCloser, error) {
	if l.body != nil {
		return l.body, nil
	}
	return io.NopCloser(bytes.NewReader(l.blob)), nil
}

func gzipTar(t *testing.T) (blob, content []byte) {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, name := range []string{"etc/", "etc/hostname"} {
		h := &tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg, Size: 4}
		if strings.HasSuffix(name, "/") {
			h.Typeflag, h.Size, h.Mode = tar.TypeDir, 0, 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("box\n"))
		}
	}
	tw.Close()
	var gb bytes.Buffer
	zw := gzip.NewWriter(&gb)
	zw.Write(tb.Bytes())
	zw.Close()
	return gb.Bytes(), tb.Bytes()
}

// TestOpenVerifiedLayer: a layer the store does not hold is read
// verified (content against its diff ID, size and digest against the
// manifest's) and kept once all matched; a stored one is read from the
// store.
func TestOpenVerifiedLayer(t *testing.T) {
	blob, content := gzipTar(t)
	l := remoteLayer{blob: blob, digest: sha256Hash(blob), size: int64(len(blob))}
	diffID := sha256Hash(content)
	read := func(s *Store, l v1.Layer, diffID v1.Hash) ([]byte, error) {
		rc, err := s.OpenVerifiedLayer(l, diffID)
		if err != nil {
			return nil, err
		}
		got, rerr := io.ReadAll(rc)
		if cerr := rc.Close(); rerr == nil {
			rerr = cerr
		}
		return got, rerr
	}

	s := newStore(t)
	short := l
	short.size--
	if _, err := read(s, short, diffID); err == nil || !strings.Contains(err.Error(), "size mismatch") {
		t.Errorf("a longer blob than the manifest says: %v", err)
	}
	wrong := l
	wrong.digest = sha256Hash([]byte("not the blob"))
	if _, err := read(s, wrong, diffID); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Errorf("a wrong digest: %v", err)
	}
	if s.HasBlob(l.digest) || s.HasBlob(wrong.digest) {
		t.Fatal("a blob that failed verification was kept")
	}
	// The blob matches its digest (and may be kept as such); the content
	// read is still refused.
	if _, err := read(s, l, sha256Hash([]byte("other"))); err == nil || !strings.Contains(err.Error(), "diff ID") {
		t.Errorf("a wrong diff ID: %v", err)
	}
	if got, err := read(s, l, diffID); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("read: %d bytes, %v", len(got), err)
	}
	if !s.HasBlob(l.digest) {
		t.Error("the verified layer is not in the store")
	}
	// A layer the store holds is read from it.
	if got, err := read(s, remoteLayer{digest: l.digest, size: l.size}, diffID); err != nil || !bytes.Equal(got, content) {
		t.Errorf("a stored layer: %d bytes, %v", len(got), err)
	}
}

// bigGzipTar is a gzip layer of 12 MiB (more than the read-ahead holds),
// with its uncompressed content.
func bigGzipTar(t *testing.T) (blob, content []byte) {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	data := make([]byte, 1<<20)
	rnd := rand.New(rand.NewPCG(1, 2)) // incompressible: the blob is as big
	for i := range data {
		data[i] = byte(rnd.Uint32())
	}
	for i := range 12 {
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("f%d", i), Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		data[0] = byte(i)
		tw.Write(data)
	}
	tw.Close()
	var gb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gb, gzip.BestSpeed)
	zw.Write(tb.Bytes())
	zw.Close()
	return gb.Bytes(), tb.Bytes()
}

// TestOpenVerifiedLayerFailures: a truncated, corrupted or substituted
// layer read through the pipelined reader fails with an error that names
// what is wrong, and leaves nothing in the store: no blob, no temp file.
func TestOpenVerifiedLayerFailures(t *testing.T) {
	t.Parallel()
	blob, content := bigGzipTar(t)
	diffID := sha256Hash(content)
	corrupt := bytes.Clone(blob)
	corrupt[len(corrupt)/2] ^= 0xff
	cut := blob[:len(blob)*2/3]
	for _, tc := range []struct {
		name   string
		l      remoteLayer
		diffID v1.Hash
		want   string
	}{
		// The registry sends less than the manifest says.
		{"truncated", remoteLayer{blob: cut, digest: sha256Hash(blob), size: int64(len(blob))}, diffID, "unexpected EOF"},
		// Corrupted in the middle, with a digest that matches the bytes:
		// the inflater or the gzip checksum refuses it.
		{"corrupt", remoteLayer{blob: corrupt, digest: sha256Hash(corrupt), size: int64(len(corrupt))}, diffID, "layer sha256:"},
		// The bytes are not the digest's.
		{"substituted", remoteLayer{blob: blob, digest: sha256Hash(corrupt), size: int64(len(blob))}, diffID, "does not match its digest"},
		// The layer is intact but not the config's.
		{"wrong diff ID", remoteLayer{blob: blob, digest: sha256Hash(blob), size: int64(len(blob))}, sha256Hash([]byte("other")), "diff ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			rc, err := s.OpenVerifiedLayer(tc.l, tc.diffID)
			if err == nil {
				_, err = io.Copy(io.Discard, rc)
				if cerr := rc.Close(); err == nil {
					err = cerr
				}
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			if s.HasBlob(tc.l.digest) {
				t.Error("the blob of a layer that failed was kept")
			}
			if n := testutil.DirNames(t, s.tmpDir); len(n) != 0 {
				t.Errorf("temp files left: %v", n)
			}
		})
	}
}

// TestOpenVerifiedLayerEarlyClose: a reader that stops early (a tar reader
// at the end-of-archive blocks, or one that only needed the first files)
// still gets the verdict from Close, which reads the rest; a layer that
// matched is kept, and one left half read because reading failed is not.
func TestOpenVerifiedLayerEarlyClose(t *testing.T) {
	t.Parallel()
	blob, content := bigGzipTar(t)
	l := remoteLayer{blob: blob, digest: sha256Hash(blob), size: int64(len(blob))}
	s := newStore(t)
	rc, err := s.OpenVerifiedLayer(l, sha256Hash(content))
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 1000)
	if _, err := io.ReadFull(rc, head); err != nil || !bytes.Equal(head, content[:1000]) {
		t.Fatalf("first bytes: %v", err)
	}
	if err := rc.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !s.HasBlob(l.digest) {
		t.Error("the layer, verified by Close, is not in the store")
	}

	s = newStore(t)
	rc, err = s.OpenVerifiedLayer(l, sha256Hash([]byte("other")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(rc, head); err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err == nil || !strings.Contains(err.Error(), "diff ID") {
		t.Fatalf("Close of a layer that is not its diff ID's: %v", err)
	}
	if s.HasBlob(l.digest) || len(testutil.DirNames(t, s.tmpDir)) != 0 {
		t.Error("a layer that failed left its blob or a temp file")
	}

	// A reader that gives up aborts: the rest is never read (the body
	// is closed), and nothing is kept.
	s = newStore(t)
	body := &closeCounter{Reader: bytes.NewReader(blob)}
	rc, err = s.OpenVerifiedLayer(remoteLayer{blob: blob, digest: l.digest, size: l.size, body: body}, sha256Hash(content))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(rc, head); err != nil {
		t.Fatal(err)
	}
	rc.(interface{ Abort() }).Abort()
	if err := rc.Close(); err != nil {
		t.Errorf("Close after Abort: %v", err)
	}
	if !body.closed || body.Len() == 0 {
		t.Errorf("after Abort the body is closed: %v, with %d bytes unread (want some)", body.closed, body.Len())
	}
	if s.HasBlob(l.digest) || len(testutil.DirNames(t, s.tmpDir)) != 0 {
		t.Error("an aborted layer left its blob or a temp file")
	}
}

// closeCounter is a layer body that records its Close.
type closeCounter struct {
	*bytes.Reader
	closed bool
}

func (c *closeCounter) Close() error { c.closed = true; return nil }

// BlobWriter.Verify checks and syncs a blob without making it visible; the
// Commit after it only renames. A failed Verify leaves nothing behind.
func TestBlobWriterVerify(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	data := []byte("verified, then committed")
	h := sha256Hash(data)

	w, err := s.NewBlobWriter()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Verify(sha256Hash([]byte("other"))); err == nil || !strings.Contains(err.Error(), "digest mismatch") {
		t.Fatalf("Verify against another digest: %v", err)
	}
	if n := testutil.DirNames(t, s.tmpDir); len(n) != 0 {
		t.Errorf("a failed Verify left %v", n)
	}
	if err := w.Commit(h); err == nil {
		t.Error("Commit after a failed Verify succeeded")
	}

	w, err = s.NewBlobWriter()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Verify(h); err != nil {
		t.Fatal(err)
	}
	if s.HasBlob(h) {
		t.Fatal("the blob is visible before Commit")
	}
	if _, err := w.Write([]byte("more")); err == nil {
		t.Error("a write after Verify was taken")
	}
	if err := w.Commit(h); err != nil {
		t.Fatal(err)
	}
	if !s.HasBlob(h) {
		t.Error("the blob is not in the store after Commit")
	}
}
