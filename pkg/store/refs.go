package store

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/pkg/atomicfile"
	"github.com/kiln-build/kiln/pkg/oci"
)

// Entry is one ref in the store.
type Entry struct {
	Ref        string
	Descriptor v1.Descriptor
}

// checkRef rejects refs that cannot be stored or printed sensibly.
func checkRef(ref string) error { return oci.CheckRef(ref) }

// readIndex reads and parses index.json. It is replaced atomically, so it
// needs no lock to read.
func (s *Store) readIndex() (*v1.IndexManifest, error) {
	_, im, err := s.readIndexData()
	return im, err
}

// readIndexData is readIndex with the bytes it parsed.
func (s *Store) readIndexData() ([]byte, *v1.IndexManifest, error) {
	data, err := os.ReadFile(s.indexPath())
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", s.indexPath(), err)
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(data))
	if err != nil {
		return nil, nil, fmt.Errorf("parsing %s: %w", s.indexPath(), err)
	}
	return data, im, nil
}

// writeIndexLocked replaces index.json: write index.json.tmp, fsync,
// rename, fsync the directory. The caller holds the exclusive lock.
func (s *Store) writeIndexLocked(im *v1.IndexManifest) error {
	data, err := jsonMarshal(im)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", s.indexPath(), err)
	}
	return s.writeIndexBytesLocked(data)
}

// writeIndexBytesLocked is writeIndexLocked of index.json's encoded bytes.
func (s *Store) writeIndexBytesLocked(data []byte) error {
	tmp := filepath.Join(s.root, indexTempFile)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, s.fileMode())
	if err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	err = atomicfile.Commit(f, s.indexPath())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replacing %s: %w", s.indexPath(), err)
	}
	return nil
}

// withoutRefAnnotations returns d without the ref annotations.
func withoutRefAnnotations(d v1.Descriptor) v1.Descriptor {
	d = *d.DeepCopy()
	delete(d.Annotations, oci.AnnotationRefName)
	delete(d.Annotations, oci.AnnotationContainerdName)
	if len(d.Annotations) == 0 {
		d.Annotations = nil
	}
	return d
}

// refUpdate adds or moves ref to desc; with remove set it deletes ref.
type refUpdate struct {
	ref    string
	desc   v1.Descriptor
	remove bool
}

// updateRefs applies updates to index.json under the exclusive lock. check,
// if not nil, runs under the lock before anything is written.
func (s *Store) updateRefs(updates []refUpdate, check func() error) error {
	lk, err := lockFile(s.lockPath, unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer lk.unlock()
	if check != nil {
		if err := check(); err != nil {
			return err
		}
	}
	data, im, err := s.readIndexData()
	if err != nil {
		return err
	}
	for _, u := range updates {
		found := oci.RemoveRef(im, u.ref)
		if u.remove {
			if !found {
				return fmt.Errorf("ref %q not found in %s", u.ref, s.root)
			}
			continue
		}
		d := *u.desc.DeepCopy()
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		d.Annotations[oci.AnnotationRefName] = u.ref
		im.Manifests = append(im.Manifests, d)
	}
	oci.NormalizeIndex(im)
	next, err := jsonMarshal(im)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", s.indexPath(), err)
	}
	if bytes.Equal(next, data) {
		// Nothing changed (a rebuild tagged as before): index.json was
		// written and synced with these very bytes, and writing them
		// again would cost two fsyncs.
		return nil
	}
	return s.writeIndexBytesLocked(next)
}

// Tag points ref at the stored manifest or index d, adding the ref or
// moving it. The manifest and everything it references (configs, layers,
// child manifests) must be in the store: Tag checks that under the lock, so
// a ref never names a partial image. A missing MediaType or Size in d is
// filled in from the stored manifest.
func (s *Store) Tag(ref string, d v1.Descriptor) error {
	if err := checkRef(ref); err != nil {
		return fmt.Errorf("tagging: %w", err)
	}
	if err := checkHash(d.Digest); err != nil {
		return fmt.Errorf("tagging %q: %w", ref, err)
	}
	stored, err := s.Descriptor(d.Digest)
	if err != nil {
		return fmt.Errorf("tagging %q: %w", ref, err)
	}
	if d.MediaType == "" {
		d.MediaType = stored.MediaType
	}
	if d.Size == 0 {
		d.Size = stored.Size
	}
	if d.Size != stored.Size {
		return fmt.Errorf("tagging %q: descriptor says %s has %d bytes, the stored manifest has %d", ref, d.Digest, d.Size, stored.Size)
	}
	if d.Platform == nil {
		d.Platform = stored.Platform
	}
	d = withoutRefAnnotations(d)
	return s.updateRefs([]refUpdate{{ref: ref, desc: d}}, func() error {
		if err := s.checkComplete(d); err != nil {
			return fmt.Errorf("tagging %q: %w", ref, err)
		}
		return nil
	})
}

// Untag removes ref. The blobs stay until GC.
func (s *Store) Untag(ref string) error {
	if err := checkRef(ref); err != nil {
		return fmt.Errorf("untagging: %w", err)
	}
	return s.updateRefs([]refUpdate{{ref: ref, remove: true}}, nil)
}

// List returns every ref, sorted by ref. Descriptors are returned without
// the ref annotation.
func (s *Store) List() ([]Entry, error) {
	im, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, d := range im.Manifests {
		if r := oci.RefName(d); r != "" {
			out = append(out, Entry{Ref: r, Descriptor: withoutRefAnnotations(d)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
}

// Resolve finds an image or index by exact ref; or by manifest digest
// ("sha256:<hex>") or image ID (the config digest, as docker and podman show
// it), full or as a unique hex prefix of at least 4 digits, with or without
// "sha256:". Prefixes are matched against the stored refs' manifests; a
// full manifest digest also finds a stored manifest no ref names (a child of
// an index, say).
func (s *Store) Resolve(name string) (v1.Descriptor, error) {
	im, err := s.readIndex()
	if err != nil {
		return v1.Descriptor{}, err
	}
	for _, d := range im.Manifests {
		if oci.RefName(d) == name && name != "" {
			return withoutRefAnnotations(d), nil
		}
	}
	hexPart := strings.ToLower(strings.TrimPrefix(name, "sha256:"))
	if !isHex(hexPart) || len(hexPart) > 64 {
		return v1.Descriptor{}, fmt.Errorf("no image %q in store %s", name, s.root)
	}
	if len(hexPart) < 4 {
		return v1.Descriptor{}, fmt.Errorf("no image %q in store %s (an ID prefix needs at least 4 hex digits)", name, s.root)
	}
	matches := map[v1.Hash]v1.Descriptor{}
	var order []v1.Hash
	for _, d := range im.Manifests {
		d = withoutRefAnnotations(d)
		hit := strings.HasPrefix(d.Digest.Hex, hexPart)
		if !hit {
			if id, err := s.ImageID(d); err == nil && strings.HasPrefix(id.Hex, hexPart) {
				hit = true
			}
		}
		if hit {
			if _, ok := matches[d.Digest]; !ok {
				order = append(order, d.Digest)
			}
			matches[d.Digest] = d
		}
	}
	switch len(matches) {
	case 1:
		return matches[order[0]], nil
	case 0:
		if len(hexPart) == 64 {
			h := v1.Hash{Algorithm: "sha256", Hex: hexPart}
			if d, err := s.Descriptor(h); err == nil {
				return d, nil
			}
		}
		return v1.Descriptor{}, fmt.Errorf("no image %q in store %s", name, s.root)
	}
	var names []string
	for _, h := range order {
		names = append(names, h.String())
	}
	return v1.Descriptor{}, fmt.Errorf("%q is ambiguous in store %s: it matches %d images (%s)", name, s.root, len(names), strings.Join(names, ", "))
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ImageID returns the image ID of the stored manifest d: its config digest,
// as docker and podman show it. For an index it returns the index digest.
func (s *Store) ImageID(d v1.Descriptor) (v1.Hash, error) {
	if err := checkHash(d.Digest); err != nil {
		return v1.Hash{}, fmt.Errorf("image ID: %w", err)
	}
	if d.MediaType.IsIndex() {
		return d.Digest, nil
	}
	if id, ok := s.ids.Load(d.Digest); ok {
		return id.(v1.Hash), nil
	}
	raw, err := oci.ReadBlob(s.blobs(), d.Digest, maxManifestSize)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return v1.Hash{}, fmt.Errorf("image ID of %s: manifest not in store %s", d.Digest, s.root)
		}
		return v1.Hash{}, fmt.Errorf("image ID of %s: %w", d.Digest, err)
	}
	mt, m, err := oci.ParseManifest(raw, d.MediaType)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("image ID of %s: %w", d.Digest, err)
	}
	id := d.Digest
	if !mt.IsIndex() {
		if m.Config == nil {
			return v1.Hash{}, fmt.Errorf("image ID of %s: manifest has no config", d.Digest)
		}
		id = m.Config.Digest
	}
	s.ids.Store(d.Digest, id)
	return id, nil
}

// WalkImages calls fn once for every image the refs name, the images of
// an index included (nested up to four levels), with its config. An image
// or index that cannot be read is skipped: a walk over what the store
// keeps (prune, verification) must not stop at one broken entry.
func (s *Store) WalkImages(fn func(img v1.Image, cfg *v1.ConfigFile)) error {
	es, err := s.List()
	if err != nil {
		return err
	}
	seen := map[v1.Hash]bool{}
	var visit func(d v1.Descriptor, depth int)
	visit = func(d v1.Descriptor, depth int) {
		if seen[d.Digest] || depth > 4 {
			return
		}
		seen[d.Digest] = true
		if d.MediaType.IsIndex() {
			idx, err := s.Index(d.Digest)
			if err != nil {
				return
			}
			m, err := idx.IndexManifest()
			if err != nil {
				return
			}
			for _, c := range m.Manifests {
				visit(c, depth+1)
			}
			return
		}
		img, err := s.Image(d.Digest)
		if err != nil {
			return
		}
		cfg, err := img.ConfigFile()
		if err != nil || cfg == nil {
			return
		}
		fn(img, cfg)
	}
	for _, e := range es {
		visit(e.Descriptor, 0)
	}
	return nil
}

// DiffIDStacks returns the diff IDs (bottom first) of every image the
// refs name, the images of an index included: what the unpacked layers a
// RUN step works on are named after. An image whose config cannot be read
// is skipped.
func (s *Store) DiffIDStacks() ([][]v1.Hash, error) {
	var out [][]v1.Hash
	err := s.WalkImages(func(_ v1.Image, cfg *v1.ConfigFile) {
		out = append(out, append([]v1.Hash(nil), cfg.RootFS.DiffIDs...))
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
