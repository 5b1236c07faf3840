package store

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testutil"
)

// TestVerify: a store holding a tagged image verifies; a blob whose bytes
// changed and a ref whose layer is gone are both reported.
func TestVerify(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	img := testutil.RandomImage(t, 2)
	d, err := s.WriteImage(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("localhost/app:1", d); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(context.Background()); err != nil {
		t.Fatalf("a sound store fails to verify: %v", err)
	}
	layers, _ := img.Layers()
	l0, _ := layers[0].Digest()
	l1, _ := layers[1].Digest()
	if err := os.Chmod(s.BlobPath(l0), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.BlobPath(l0), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(s.BlobPath(l1)); err != nil {
		t.Fatal(err)
	}
	err = s.Verify(context.Background())
	if err == nil {
		t.Fatal("a tampered store verifies")
	}
	for _, want := range []string{l0.String() + ": content hashes to", "ref localhost/app:1", l1.String()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Verify's error does not say %q: %v", want, err)
		}
	}
}
