package build

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/store"
)

// The reader that unpacking reads a layer through checks its diff ID (the
// rootfs store does not hash it again) and keeps the layer's index only
// when the whole layer went through and matched.
func TestIndexingOpenerChecksDiffID(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "etc/hosts", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5})
	tw.Write([]byte("hosts"))
	tw.Close()
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	good, err := l.DiffID()
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b := &builder{opts: Options{Store: st}}
	ctx := context.Background()
	read := func(diffID v1.Hash) error {
		rc, err := b.indexingOpener(ctx, l, diffID, "test")()
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, rc)
		if cerr := rc.Close(); cerr != nil {
			t.Fatal(cerr)
		}
		return err
	}
	wrong := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}
	if err := read(wrong); err == nil || !strings.Contains(err.Error(), "not its diff ID") {
		t.Errorf("a layer read under another diff ID: %v", err)
	}
	if b.hasIndex(ctx, wrong) {
		t.Error("an index was kept for a layer that did not match its diff ID")
	}
	if err := read(good); err != nil {
		t.Fatalf("the layer under its own diff ID: %v", err)
	}
	if !b.hasIndex(ctx, good) {
		t.Error("no index kept after the whole layer was read")
	}
	// With the index at hand, the layer is still checked.
	b.keepIndex(ctx, &archive.LayerIndex{DiffID: wrong}, "test")
	if !b.hasIndex(ctx, wrong) {
		t.Fatal("no index at hand")
	}
	if err := read(wrong); err == nil {
		t.Error("a mismatch went unnoticed once an index was at hand")
	}
}
