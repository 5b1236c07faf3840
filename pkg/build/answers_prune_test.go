package build

import (
	"archive/tar"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/cache"
	"github.com/kiln-build/kiln/pkg/store"
)

// TestPrunePathAnswers: plain prune keeps the answers about a base whose
// layers a stored image still has (or whose path indexes are kept), and
// drops those about layers the store no longer has, broken files and dead
// temporary files; all removes every answer, or with a time only those
// written before it.
func TestPrunePathAnswers(t *testing.T) {
	t.Parallel()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	img, err := random.Image(64, 2)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := st.WriteImage(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Tag("built:1", desc); err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	stored := cfg.RootFS.DiffIDs
	gone := v1.Hash{Algorithm: "sha256", Hex: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
	indexed := v1.Hash{Algorithm: "sha256", Hex: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"} // of no bytes
	data, err := archive.NewIndexer(indexed).Finish()
	if err != nil {
		t.Fatal(err)
	}
	if err := cache.NewLocal(st).PutIndex(ctx, indexed, data); err != nil {
		t.Fatal(err)
	}
	dir := answersDir(st)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, diffIDs ...v1.Hash) {
		f := answersFile{Version: answersVersion, Answers: map[string]*archive.IndexEntry{"/app": nil}}
		for _, d := range diffIDs {
			f.DiffIDs = append(f.DiffIDs, d.String())
		}
		raw, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("stored.json", stored...)
	write("base.json", stored[0])
	write("indexed.json", indexed)
	write("gone.json", stored[0], gone)
	if err := os.WriteFile(filepath.Join(dir, "broken.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	for _, dead := range []string{".answers-123", ".stored.json.tmp-456"} {
		dead = filepath.Join(dir, dead)
		if err := os.WriteFile(dead, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(dead, old, old); err != nil {
			t.Fatal(err)
		}
	}
	names := func() map[string]bool {
		des, _ := os.ReadDir(dir)
		m := map[string]bool{}
		for _, de := range des {
			m[de.Name()] = true
		}
		return m
	}

	n, err := PrunePathAnswers(st, false, time.Time{})
	if err != nil || n != 2 {
		t.Fatalf("plain prune removed %d, %v; want 2 (gone.json, broken.json)", n, err)
	}
	if got := names(); len(got) != 3 || !got["stored.json"] || !got["base.json"] || !got["indexed.json"] {
		t.Fatalf("after plain prune: %v", got)
	}
	if n, err := PrunePathAnswers(st, true, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("all, until=1h, of answers written now: %d, %v", n, err)
	}
	if err := os.Chtimes(filepath.Join(dir, "base.json"), old, old); err != nil {
		t.Fatal(err)
	}
	if n, err := PrunePathAnswers(st, true, time.Now().Add(-time.Hour)); err != nil || n != 1 || names()["base.json"] {
		t.Fatalf("all, until=1h: removed %d, %v; left %v", n, err, names())
	}
	if n, err := PrunePathAnswers(st, true, time.Time{}); err != nil || n != 2 || len(names()) != 0 {
		t.Fatalf("all: removed %d, %v; left %v", n, err, names())
	}
}

// Path answers are written without fsync: a crash may leave the file
// missing, cut short or full of NUL bytes. Such a file is no answer (the
// index is asked again), never a wrong one, and the next save is whole.
func TestPathAnswersTorn(t *testing.T) {
	t.Parallel()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b := &builder{opts: Options{Store: st}}
	cfg := &v1.ConfigFile{RootFS: v1.RootFS{DiffIDs: []v1.Hash{{Algorithm: "sha256", Hex: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}}}
	first := &imageSource{ref: "base", cfg: cfg}
	a := first.answers(b)
	a.remember("/usr", &tar.Header{Typeflag: tar.TypeDir, Mode: 0o755})
	a.remember("/app", nil)
	if err := a.save(first); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(a.file)
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := (&imageSource{cfg: cfg}).answers(b).lookup("/usr"); !ok || h == nil || h.Typeflag != tar.TypeDir {
		t.Fatalf("kept answer: %v, %v", h, ok)
	}
	for _, torn := range [][]byte{nil, raw[:len(raw)/2], make([]byte, len(raw))} {
		if err := os.WriteFile(a.file, torn, 0o600); err != nil {
			t.Fatal(err)
		}
		next := &imageSource{ref: "base", cfg: cfg}
		na := next.answers(b)
		for _, p := range []string{"/usr", "/app"} {
			if h, ok := na.lookup(p); ok {
				t.Errorf("torn answers (%d bytes): %s answered %v", len(torn), p, h)
			}
		}
		na.remember("/usr", &tar.Header{Typeflag: tar.TypeDir, Mode: 0o755})
		if err := na.save(next); err != nil {
			t.Fatal(err)
		}
		if h, ok := (&imageSource{cfg: cfg}).answers(b).lookup("/usr"); !ok || h == nil || h.Typeflag != tar.TypeDir {
			t.Errorf("answers saved after a tear: %v, %v", h, ok)
		}
	}
}
