package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/pkg/atomicfile"
	"github.com/kiln-build/kiln/pkg/oci"
)

// DefaultGCGrace is how old an unreachable blob must be before GC removes
// it. See GCWithGrace.
const DefaultGCGrace = time.Hour

// GC removes the blobs that no ref reaches (through indexes, manifests,
// configs, layers and subjects) and that are older than DefaultGCGrace. It
// returns how many blobs it removed and how many bytes they held.
func (s *Store) GC(ctx context.Context) (removed int, freed int64, err error) {
	return s.GCWithGrace(ctx, DefaultGCGrace)
}

// GCWithGrace is GC with a chosen grace period (0 removes every unreachable
// blob at once).
//
// Locking: GC holds the store lock exclusively from the reachability walk
// to the last removal, so no ref changes under it. Every blob commit, and
// every "already present, skip it" decision of WriteBlob and WriteImage,
// takes the same lock shared and refreshes the blob's modification time, so
// a blob that a writer has just committed or decided to reuse is younger
// than the grace period and survives until the writer tags it. Tag checks,
// under the exclusive lock, that everything the tagged manifest references
// is present, so even a writer slower than the grace period can never
// create a ref to a partial image: its Tag fails instead. Temp files of
// live writers are flocked by them and are never touched.
func (s *Store) GCWithGrace(ctx context.Context, grace time.Duration) (removed int, freed int64, err error) {
	lk, err := lockFileContext(ctx, s.lockPath, unix.LOCK_EX)
	if err != nil {
		return 0, 0, fmt.Errorf("GC of %s: %w", s.root, err)
	}
	defer lk.unlock()

	im, err := s.readIndex()
	if err != nil {
		return 0, 0, fmt.Errorf("GC of %s: %w", s.root, err)
	}
	w := &walker{s: s, seen: map[v1.Hash]bool{}}
	for _, d := range im.Manifests {
		if err := ctx.Err(); err != nil {
			return 0, 0, fmt.Errorf("GC of %s: %w", s.root, err)
		}
		if err := w.manifest(d, false); err != nil {
			return 0, 0, fmt.Errorf("GC of %s: ref %q: %w (nothing removed)", s.root, oci.RefName(d), err)
		}
	}

	roots, err := s.cacheRoots()
	if err != nil {
		return 0, 0, fmt.Errorf("GC of %s: reading cache refs: %w", s.root, err)
	}
	for _, d := range roots {
		// A cache entry whose blobs are gone is skipped, not an error:
		// the walk is lenient (strict is off).
		if err := w.manifest(d, true); err != nil {
			return 0, 0, fmt.Errorf("GC of %s: cache ref %s: %w (nothing removed)", s.root, d.Digest, err)
		}
	}

	entries, err := os.ReadDir(s.blobDir)
	if err != nil {
		return 0, 0, fmt.Errorf("GC of %s: %w", s.root, err)
	}
	cutoff := time.Now().Add(-grace)
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return removed, freed, fmt.Errorf("GC of %s: %w", s.root, err)
		}
		h := v1.Hash{Algorithm: "sha256", Hex: e.Name()}
		if checkHash(h) != nil || w.seen[h] {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || info.ModTime().After(cutoff) {
			continue
		}
		if err := os.Remove(filepath.Join(s.blobDir, e.Name())); err != nil {
			return removed, freed, fmt.Errorf("GC of %s: removing blob %s: %w", s.root, h, err)
		}
		s.ids.Delete(h)
		removed++
		freed += info.Size()
	}
	if removed > 0 {
		if err := atomicfile.SyncDir(s.blobDir); err != nil {
			return removed, freed, err
		}
	}
	// Leftovers of killed writers: unlocked temp files and index.json.tmp
	// (we hold the lock that every index.json writer holds).
	if err := s.cleanStaleTemps(); err != nil {
		return removed, freed, err
	}
	os.Remove(filepath.Join(s.root, indexTempFile))
	return removed, freed, nil
}

// walker visits everything a manifest reaches.
type walker struct {
	s    *Store
	seen map[v1.Hash]bool
	// strict makes missing blobs an error (Tag's completeness check);
	// otherwise they are skipped (GC).
	strict bool
}

// manifest visits manifest or index d and what it references. optional is
// set for subjects, which may legitimately be absent.
func (w *walker) manifest(d v1.Descriptor, optional bool) error {
	if checkHash(d.Digest) != nil {
		if w.strict && !optional {
			return fmt.Errorf("malformed digest %q", d.Digest)
		}
		return nil
	}
	if w.seen[d.Digest] {
		return nil
	}
	fi, err := os.Stat(w.s.BlobPath(d.Digest))
	if err != nil {
		if w.strict && !optional {
			return fmt.Errorf("manifest %s is not in the store", d.Digest)
		}
		return nil
	}
	w.seen[d.Digest] = true
	known := d.MediaType.IsImage() || d.MediaType.IsIndex()
	if !known && fi.Size() > maxManifestSize {
		return nil // some other kind of blob
	}
	raw, err := oci.ReadBlob(w.s.blobs(), d.Digest, maxManifestSize)
	if err != nil {
		return err
	}
	_, m, err := oci.ParseManifest(raw, d.MediaType)
	if err != nil {
		if known {
			return fmt.Errorf("manifest %s: %w", d.Digest, err)
		}
		return nil
	}
	for _, c := range m.Manifests {
		if err := w.manifest(c, false); err != nil {
			return err
		}
	}
	if m.Config != nil {
		if err := w.blob(*m.Config, d.Digest); err != nil {
			return err
		}
	}
	for _, l := range m.Layers {
		if err := w.blob(l, d.Digest); err != nil {
			return err
		}
	}
	if m.Subject != nil && !w.strict {
		return w.manifest(*m.Subject, true)
	}
	return nil
}

// blob visits a config or layer of manifest parent.
func (w *walker) blob(d v1.Descriptor, parent v1.Hash) error {
	if w.seen[d.Digest] {
		return nil
	}
	if !w.s.HasBlob(d.Digest) {
		if len(w.s.Sources(d.Digest)) > 0 {
			w.seen[d.Digest] = true // fetched on demand from its registry
			return nil
		}
		if w.strict {
			return fmt.Errorf("blob %s of manifest %s is not in the store", d.Digest, parent)
		}
		return nil
	}
	w.seen[d.Digest] = true
	return nil
}

// checkComplete verifies that the manifest d and everything it references
// are stored.
func (s *Store) checkComplete(d v1.Descriptor) error {
	return (&walker{s: s, seen: map[v1.Hash]bool{}, strict: true}).manifest(d, false)
}

// jsonMarshal encodes v without HTML escaping and without a trailing
// newline.
func jsonMarshal(v any) ([]byte, error) { return oci.MarshalJSON(v) }
