package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
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

// Source records that are hints are not synced: after a crash one may be
// missing, cut short or hold NUL bytes. Whatever a crash tore reads as
// never recorded (a layer neither held nor sourced is "not in the store",
// which a cache entry takes as a miss), a later hint is whole again, and
// a kept source (one an image depends on) is untouched by hints.
func TestSourceRecordTorn(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	h := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	p := s.hintsPath(h)
	for _, r := range []string{"reg.example/a", "reg.example/b", "reg.example/a"} {
		if err := s.RecordSource(h, r); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Sources(h); !slices.Equal(got, []string{"reg.example/a", "reg.example/b"}) {
		t.Fatalf("sources %v", got)
	}
	if _, err := os.Stat(s.sourcePath(h)); err == nil {
		t.Fatal("a hint was kept as a source an image depends on")
	}
	for _, tc := range []struct {
		name, torn string
		want       []string
	}{
		{"missing", "", nil},
		{"cut in the first line", "reg.exa", nil},
		{"cut in the second line", "reg.example/a\nreg.exa", []string{"reg.example/a"}},
		{"never written (NUL bytes)", "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", nil},
		{"NULs after a whole line", "reg.example/a\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\n", []string{"reg.example/a"}},
	} {
		os.Remove(p)
		if tc.name != "missing" {
			if err := os.WriteFile(p, []byte(tc.torn), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if got := s.Sources(h); !slices.Equal(got, tc.want) {
			t.Errorf("%s: sources %v, want %v", tc.name, got, tc.want)
		}
		if len(tc.want) == 0 {
			if _, err := s.Layer(v1.Descriptor{Digest: h, Size: 10}, h); err == nil {
				t.Errorf("%s: a layer neither held nor sourced was given", tc.name)
			}
		}
		// A hint after the tear is a line of its own.
		if err := s.RecordSource(h, "reg.example/c"); err != nil {
			t.Fatal(err)
		}
		if got := s.Sources(h); !slices.Equal(got, append(tc.want, "reg.example/c")) {
			t.Errorf("%s: after a new hint, sources %v", tc.name, got)
		}
	}
	if err := s.keepSources(map[v1.Hash]string{h: "reg.example/kept"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("\x00\x00\x00"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := s.Sources(h); !slices.Equal(got, []string{"reg.example/kept"}) {
		t.Errorf("a kept source with torn hints: sources %v", got)
	}
	if err := s.RecordSource(h, "two words"); err == nil {
		t.Error("a repository with a space was recorded")
	}
}

// An image whose layer is left in its registry depends on the layer's
// source: it is kept (not a hint), and so is a hint an image comes to
// depend on.
func TestImageKeepsItsSources(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	d0, _ := layers[0].Digest()
	d1, _ := layers[1].Digest()
	if err := s.RecordSource(d1, "reg.example/cache"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteImage(t.Context(), img, WithSources(map[v1.Hash]string{d0: "reg.example/base"})); err != nil {
		t.Fatal(err)
	}
	for d, want := range map[v1.Hash]string{d0: "reg.example/base\n", d1: "reg.example/cache\n"} {
		if s.HasBlob(d) {
			t.Fatalf("layer %s was copied", d)
		}
		if b, err := os.ReadFile(s.sourcePath(d)); err != nil || string(b) != want {
			t.Errorf("kept source of %s: %q, %v; want %q", d, b, err, want)
		}
	}
}
