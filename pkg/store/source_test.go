package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

// A layer left in its registry is recorded, not read; the image can be
// tagged; reading the layer fetches it once, verified, into the store.
func TestWriteImageWithSources(t *testing.T) {
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	base, _ := layers[0].Digest()
	content := map[v1.Hash][]byte{}
	for _, l := range layers {
		d, _ := l.Digest()
		rc, _ := l.Compressed()
		content[d], _ = io.ReadAll(rc)
		rc.Close()
	}
	fetches := 0
	s := newStore(t, WithFetcher(func(_ context.Context, repo string, h v1.Hash) (io.ReadCloser, error) {
		if repo != "reg.example/base" {
			return nil, errors.New("wrong repo " + repo)
		}
		fetches++
		return io.NopCloser(bytes.NewReader(content[h])), nil
	}))
	d, err := s.WriteImage(t.Context(), img, WithSources(map[v1.Hash]string{base: "reg.example/base"}))
	if err != nil {
		t.Fatal(err)
	}
	if s.HasBlob(base) || fetches != 0 {
		t.Fatalf("the sourced layer was copied (held %v, fetches %d)", s.HasBlob(base), fetches)
	}
	if got := s.Sources(base); len(got) != 1 || got[0] != "reg.example/base" {
		t.Fatalf("sources = %v", got)
	}
	if err := s.Tag("reg.example/app:1", d); err != nil {
		t.Fatalf("tagging an image with a sourced layer: %v", err)
	}
	if n, _, err := s.GCWithGrace(t.Context(), 0); err != nil || n != 0 {
		t.Fatalf("GC removed %d (%v)", n, err)
	}
	stored, err := s.Image(d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	sl, _ := stored.LayerByDigest(base)
	rc, err := sl.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, content[base]) || fetches != 1 {
		t.Fatalf("read %d bytes with %d fetches", len(got), fetches)
	}
	if !s.HasBlob(base) {
		t.Fatalf("a fetched layer read to the end is kept in the store")
	}
}

func TestSourcedLayerCorruptedIsRefused(t *testing.T) {
	s := newStore(t, WithFetcher(func(context.Context, string, v1.Hash) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader([]byte("not the layer"))), nil
	}))
	img, _ := random.Image(1024, 1)
	layers, _ := img.Layers()
	d0, _ := layers[0].Digest()
	d, err := s.WriteImage(t.Context(), img, WithSources(map[v1.Hash]string{d0: "reg.example/base"}))
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := s.Image(d.Digest)
	l, _ := stored.LayerByDigest(d0)
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if err == nil {
		t.Fatal("a blob that does not match its digest was accepted")
	}
	if s.HasBlob(d0) {
		t.Fatal("a corrupted blob was stored")
	}

	s2 := newStore(t)
	if _, err := s2.WriteImage(t.Context(), img, WithSources(map[v1.Hash]string{d0: "reg.example/base"})); err != nil {
		t.Fatal(err)
	}
	stored, _ = s2.Image(d.Digest)
	l, _ = stored.LayerByDigest(d0)
	if _, err := l.Compressed(); err == nil {
		t.Fatal("no fetcher: reading a sourced layer must fail with a clear error")
	}
}
