package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

const (
	// maxManifestSize bounds manifests and indexes read into memory (the
	// limit registries apply too).
	maxManifestSize = 4 << 20
	// maxConfigSize bounds image configs read into memory.
	maxConfigSize = 64 << 20
	// layerWorkers is how many layers WriteImage copies at once.
	layerWorkers = 3
)

// anyManifest has the fields of every manifest kind kiln walks: image
// manifests, indexes and artifact manifests.
type anyManifest struct {
	SchemaVersion int64           `json:"schemaVersion"`
	MediaType     types.MediaType `json:"mediaType,omitempty"`
	Config        *v1.Descriptor  `json:"config,omitempty"`
	Layers        []v1.Descriptor `json:"layers,omitempty"`
	Manifests     []v1.Descriptor `json:"manifests,omitempty"`
	Subject       *v1.Descriptor  `json:"subject,omitempty"`
}

// parseAnyManifest parses raw and works out its media type: the mediaType
// field, else hint, else from the shape (manifests → index, config → image).
func parseAnyManifest(raw []byte, hint types.MediaType) (types.MediaType, *anyManifest, error) {
	var m anyManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", nil, fmt.Errorf("not a manifest: %w", err)
	}
	if m.SchemaVersion != 2 {
		return "", nil, fmt.Errorf("not a manifest: schemaVersion %d, want 2", m.SchemaVersion)
	}
	switch {
	case m.MediaType != "":
		return m.MediaType, &m, nil
	case hint != "":
		return hint, &m, nil
	case m.Manifests != nil:
		return types.OCIImageIndex, &m, nil
	case m.Config != nil:
		return types.OCIManifestSchema1, &m, nil
	}
	return "", nil, fmt.Errorf("not a manifest: no mediaType, config or manifests")
}

// isIndexType reports whether mt is an index (OCI or Docker list).
func isIndexType(mt types.MediaType) bool { return mt.IsIndex() }

// readBlobBytes reads a small blob and verifies its digest.
func readBlobBytes(src blobSource, h v1.Hash, limit int64) ([]byte, error) {
	rc, err := src.openBlob(h)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", h, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("blob %s is larger than %d bytes", h, limit)
	}
	if got := sha256Hash(data); h.Algorithm == "sha256" && got != h {
		return nil, fmt.Errorf("blob %s is corrupt: its content has digest %s", h, got)
	}
	return data, nil
}

// lazyImage is a v1.Image whose manifest and config are in memory and whose
// layers are read from a blobSource only when asked.
type lazyImage struct {
	src     blobSource
	digest  v1.Hash
	mt      types.MediaType
	raw     []byte
	m       *v1.Manifest
	rawCfg  []byte
	diffIDs []v1.Hash
}

var _ v1.Image = (*lazyImage)(nil)

// loadImage reads manifest h and its config from src.
func loadImage(src blobSource, h v1.Hash, hint types.MediaType) (*lazyImage, error) {
	raw, err := readBlobBytes(src, h, maxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", h, err)
	}
	mt, _, err := parseAnyManifest(raw, hint)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", h, err)
	}
	if isIndexType(mt) {
		return nil, fmt.Errorf("%s is an image index (%s), not an image", h, mt)
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("image %s: parsing manifest: %w", h, err)
	}
	rawCfg, err := readBlobBytes(src, m.Config.Digest, maxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", h, err)
	}
	img := &lazyImage{src: src, digest: h, mt: mt, raw: raw, m: m, rawCfg: rawCfg}
	var cfg struct {
		RootFS struct {
			DiffIDs []v1.Hash `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if json.Unmarshal(rawCfg, &cfg) == nil { // artifacts may have other configs
		img.diffIDs = cfg.RootFS.DiffIDs
	}
	return img, nil
}

func (i *lazyImage) layer(idx int) v1.Layer {
	var diffID v1.Hash
	if idx < len(i.diffIDs) {
		diffID = i.diffIDs[idx]
	}
	return newBlobLayer(i.src, i.m.Layers[idx], diffID)
}

// Layers implements v1.Image.
func (i *lazyImage) Layers() ([]v1.Layer, error) {
	ls := make([]v1.Layer, len(i.m.Layers))
	for n := range i.m.Layers {
		ls[n] = i.layer(n)
	}
	return ls, nil
}

// MediaType implements v1.Image.
func (i *lazyImage) MediaType() (types.MediaType, error) { return i.mt, nil }

// Size implements v1.Image.
func (i *lazyImage) Size() (int64, error) { return int64(len(i.raw)), nil }

// ConfigName implements v1.Image.
func (i *lazyImage) ConfigName() (v1.Hash, error) { return i.m.Config.Digest, nil }

// ConfigFile implements v1.Image.
func (i *lazyImage) ConfigFile() (*v1.ConfigFile, error) {
	cf, err := v1.ParseConfigFile(bytes.NewReader(i.rawCfg))
	if err != nil {
		return nil, fmt.Errorf("image %s: config %s: %w", i.digest, i.m.Config.Digest, err)
	}
	return cf, nil
}

// RawConfigFile implements v1.Image.
func (i *lazyImage) RawConfigFile() ([]byte, error) { return bytes.Clone(i.rawCfg), nil }

// Digest implements v1.Image.
func (i *lazyImage) Digest() (v1.Hash, error) { return i.digest, nil }

// Manifest implements v1.Image.
func (i *lazyImage) Manifest() (*v1.Manifest, error) { return i.m.DeepCopy(), nil }

// RawManifest implements v1.Image: the stored bytes, unchanged.
func (i *lazyImage) RawManifest() ([]byte, error) { return bytes.Clone(i.raw), nil }

// LayerByDigest implements v1.Image.
func (i *lazyImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	if h == i.m.Config.Digest {
		return partial.ConfigLayer(i)
	}
	for n, d := range i.m.Layers {
		if d.Digest == h {
			return i.layer(n), nil
		}
	}
	return nil, fmt.Errorf("image %s has no layer %s", i.digest, h)
}

// LayerByDiffID implements v1.Image.
func (i *lazyImage) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	for n, d := range i.diffIDs {
		if d == h && n < len(i.m.Layers) {
			return i.layer(n), nil
		}
	}
	return nil, fmt.Errorf("image %s has no layer with diff ID %s", i.digest, h)
}

// lazyIndex is a v1.ImageIndex read from a blobSource.
type lazyIndex struct {
	src    blobSource
	digest v1.Hash
	mt     types.MediaType
	raw    []byte
	im     *v1.IndexManifest
}

var _ v1.ImageIndex = (*lazyIndex)(nil)

// loadIndex reads index h from src.
func loadIndex(src blobSource, h v1.Hash, hint types.MediaType) (*lazyIndex, error) {
	raw, err := readBlobBytes(src, h, maxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", h, err)
	}
	mt, _, err := parseAnyManifest(raw, hint)
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", h, err)
	}
	if !isIndexType(mt) {
		return nil, fmt.Errorf("%s is not an image index but %s", h, mt)
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", h, err)
	}
	return &lazyIndex{src: src, digest: h, mt: mt, raw: raw, im: im}, nil
}

// MediaType implements v1.ImageIndex.
func (x *lazyIndex) MediaType() (types.MediaType, error) { return x.mt, nil }

// Digest implements v1.ImageIndex.
func (x *lazyIndex) Digest() (v1.Hash, error) { return x.digest, nil }

// Size implements v1.ImageIndex.
func (x *lazyIndex) Size() (int64, error) { return int64(len(x.raw)), nil }

// IndexManifest implements v1.ImageIndex.
func (x *lazyIndex) IndexManifest() (*v1.IndexManifest, error) { return x.im.DeepCopy(), nil }

// RawManifest implements v1.ImageIndex.
func (x *lazyIndex) RawManifest() ([]byte, error) { return bytes.Clone(x.raw), nil }

func (x *lazyIndex) child(h v1.Hash) (v1.Descriptor, error) {
	for _, d := range x.im.Manifests {
		if d.Digest == h {
			return d, nil
		}
	}
	return v1.Descriptor{}, fmt.Errorf("index %s has no manifest %s", x.digest, h)
}

// Image implements v1.ImageIndex.
func (x *lazyIndex) Image(h v1.Hash) (v1.Image, error) {
	d, err := x.child(h)
	if err != nil {
		return nil, err
	}
	return loadImage(x.src, h, d.MediaType)
}

// ImageIndex implements v1.ImageIndex.
func (x *lazyIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	d, err := x.child(h)
	if err != nil {
		return nil, err
	}
	return loadIndex(x.src, h, d.MediaType)
}

// Image returns the stored image with manifest digest h. Its manifest and
// config are read now; its layers are Store.Layer values read on demand.
func (s *Store) Image(h v1.Hash) (v1.Image, error) {
	if err := checkHash(h); err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	return loadImage(s, h, "")
}

// Index returns the stored image index with digest h.
func (s *Store) Index(h v1.Hash) (v1.ImageIndex, error) {
	if err := checkHash(h); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	return loadIndex(s, h, "")
}

// Descriptor describes the stored manifest or index h: media type from the
// manifest blob, its size, and for images the platform from the config.
func (s *Store) Descriptor(h v1.Hash) (v1.Descriptor, error) {
	if err := checkHash(h); err != nil {
		return v1.Descriptor{}, fmt.Errorf("descriptor: %w", err)
	}
	fi, err := os.Stat(s.BlobPath(h))
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("manifest %s not in store %s", h, s.root)
	}
	if fi.Size() > maxManifestSize {
		return v1.Descriptor{}, fmt.Errorf("blob %s is not a manifest (%d bytes)", h, fi.Size())
	}
	raw, err := readBlobBytes(s, h, maxManifestSize)
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt, m, err := parseAnyManifest(raw, "")
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("blob %s: %w", h, err)
	}
	d := v1.Descriptor{MediaType: mt, Digest: h, Size: int64(len(raw))}
	if !isIndexType(mt) && m.Config != nil {
		if rawCfg, err := readBlobBytes(s, m.Config.Digest, maxConfigSize); err == nil {
			d.Platform = platformOf(rawCfg)
		}
	}
	return d, nil
}

// platformOf returns the platform recorded in an image config, if any.
func platformOf(rawCfg []byte) *v1.Platform {
	cf, err := v1.ParseConfigFile(bytes.NewReader(rawCfg))
	if err != nil {
		return nil
	}
	return cf.Platform()
}

// WriteImage stores img: first the layers the store lacks (streamed through
// a BlobWriter and verified against the manifest; layers already present are
// skipped by digest and never read), then the config, then the manifest
// bytes exactly as img returns them. It returns the manifest's descriptor,
// with the platform from the config when the config names one.
//
// Blobs that are already present get their modification time refreshed, so
// GC's grace period covers the whole image until the caller tags it.
func (s *Store) WriteImage(ctx context.Context, img v1.Image, opts ...WriteOption) (v1.Descriptor, error) {
	wo := writeOptions(opts)
	raw, err := img.RawManifest()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("writing image: manifest: %w", err)
	}
	digest := sha256Hash(raw)
	mt, err := img.MediaType()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("writing image %s: media type: %w", digest, err)
	}
	pmt, _, err := parseAnyManifest(raw, mt)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("writing image %s: %w", digest, err)
	}
	if mt == "" {
		mt = pmt
	}
	if isIndexType(mt) {
		return v1.Descriptor{}, fmt.Errorf("writing image %s: it is an index (%s); use WriteIndex", digest, mt)
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("writing image %s: parsing manifest: %w", digest, err)
	}
	if err := checkSizes(m); err != nil {
		return v1.Descriptor{}, fmt.Errorf("writing image %s: %w", digest, err)
	}

	if err := s.writeLayers(ctx, img, digest, m.Layers, wo); err != nil {
		return v1.Descriptor{}, err
	}

	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("writing image %s: config: %w", digest, err)
	}
	if len(rawCfg) > maxConfigSize {
		return v1.Descriptor{}, fmt.Errorf("writing image %s: the config is %d bytes, more than the %d a store holds", digest, len(rawCfg), maxConfigSize)
	}
	if err := ctx.Err(); err != nil {
		return v1.Descriptor{}, fmt.Errorf("writing image %s: %w", digest, err)
	}
	if err := s.writeBytes(m.Config.Digest, rawCfg); err != nil {
		return v1.Descriptor{}, fmt.Errorf("writing image %s: config: %w", digest, err)
	}
	if err := s.writeBytes(digest, raw); err != nil {
		return v1.Descriptor{}, fmt.Errorf("writing image %s: manifest: %w", digest, err)
	}
	return v1.Descriptor{MediaType: mt, Digest: digest, Size: int64(len(raw)), Platform: platformOf(rawCfg)}, nil
}

// writeLayers copies the layers the store lacks, a few at a time.
func (s *Store) writeLayers(ctx context.Context, img v1.Image, imgDigest v1.Hash, layers []v1.Descriptor, wo *writeOpts) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(layerWorkers)
	seen := map[v1.Hash]bool{}
	err := func() error {
		for _, d := range layers {
			if seen[d.Digest] {
				continue
			}
			seen[d.Digest] = true
			if err := checkHash(d.Digest); err != nil {
				return fmt.Errorf("writing image %s: layer: %w", imgDigest, err)
			}
			present, err := s.ensurePresent(d.Digest)
			if err != nil {
				return err
			}
			if repo, ok := wo.sources[d.Digest]; ok {
				// Its registry is recorded whether or not the store holds
				// it (a base layer read for its path index is kept): a
				// push mounts it from there; one left in its registry is
				// fetched only if read.
				if err := s.RecordSource(d.Digest, repo); err != nil {
					return fmt.Errorf("writing image %s: %w", imgDigest, err)
				}
				continue
			}
			if present {
				continue
			}
			if len(s.Sources(d.Digest)) > 0 {
				continue
			}
			if gctx.Err() != nil {
				return nil // a copy failed: Wait reports it
			}
			g.Go(func() error {
				if err := s.copyLayer(gctx, img, d); err != nil {
					return fmt.Errorf("writing image %s: %w", imgDigest, err)
				}
				return nil
			})
		}
		return nil
	}()
	if werr := g.Wait(); werr != nil {
		return werr
	}
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("writing image %s: %w", imgDigest, err)
	}
	return nil
}

// copyLayer streams one layer into the store and verifies size and digest.
func (s *Store) copyLayer(ctx context.Context, img v1.Image, d v1.Descriptor) error {
	l, err := img.LayerByDigest(d.Digest)
	if err != nil {
		return fmt.Errorf("layer %s: %w", d.Digest, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("layer %s: %w", d.Digest, err)
	}
	defer rc.Close()
	w, err := s.NewBlobWriter()
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, ctxReader{ctx, rc}); err != nil {
		w.Abort()
		return fmt.Errorf("layer %s: %w", d.Digest, err)
	}
	if w.Size() != d.Size {
		w.Abort()
		return fmt.Errorf("layer %s: size mismatch: manifest says %d bytes, got %d", d.Digest, d.Size, w.Size())
	}
	if err := w.Commit(d.Digest); err != nil {
		return fmt.Errorf("layer %s: %w", d.Digest, err)
	}
	return nil
}

// WriteIndex stores idx: every child image or index first (see WriteImage),
// then the index manifest bytes. It returns the index's descriptor.
func (s *Store) WriteIndex(ctx context.Context, idx v1.ImageIndex, opts ...WriteOption) (v1.Descriptor, error) {
	raw, err := idx.RawManifest()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("writing index: manifest: %w", err)
	}
	digest := sha256Hash(raw)
	mt, err := idx.MediaType()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("writing index %s: media type: %w", digest, err)
	}
	pmt, _, err := parseAnyManifest(raw, mt)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("writing index %s: %w", digest, err)
	}
	if mt == "" {
		mt = pmt
	}
	if !isIndexType(mt) {
		return v1.Descriptor{}, fmt.Errorf("writing index %s: it is not an index but %s", digest, mt)
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("writing index %s: %w", digest, err)
	}
	for _, c := range im.Manifests {
		if err := ctx.Err(); err != nil {
			return v1.Descriptor{}, fmt.Errorf("writing index %s: %w", digest, err)
		}
		if err := checkHash(c.Digest); err != nil {
			return v1.Descriptor{}, fmt.Errorf("writing index %s: child: %w", digest, err)
		}
		var got v1.Descriptor
		switch {
		case isIndexType(c.MediaType):
			child, err := idx.ImageIndex(c.Digest)
			if err != nil {
				return v1.Descriptor{}, fmt.Errorf("writing index %s: child %s: %w", digest, c.Digest, err)
			}
			if got, err = s.WriteIndex(ctx, child, opts...); err != nil {
				return v1.Descriptor{}, fmt.Errorf("writing index %s: %w", digest, err)
			}
		case c.MediaType.IsImage():
			child, err := idx.Image(c.Digest)
			if err != nil {
				return v1.Descriptor{}, fmt.Errorf("writing index %s: child %s: %w", digest, c.Digest, err)
			}
			if got, err = s.WriteImage(ctx, child, opts...); err != nil {
				return v1.Descriptor{}, fmt.Errorf("writing index %s: %w", digest, err)
			}
		default:
			present, err := s.ensurePresent(c.Digest)
			if err != nil {
				return v1.Descriptor{}, err
			}
			if !present {
				return v1.Descriptor{}, fmt.Errorf("writing index %s: child %s has media type %q, which kiln cannot store", digest, c.Digest, c.MediaType)
			}
			continue
		}
		if got.Digest != c.Digest {
			return v1.Descriptor{}, fmt.Errorf("writing index %s: child %s has digest %s", digest, c.Digest, got.Digest)
		}
	}
	if err := s.writeBytes(digest, raw); err != nil {
		return v1.Descriptor{}, fmt.Errorf("writing index %s: %w", digest, err)
	}
	return v1.Descriptor{MediaType: mt, Digest: digest, Size: int64(len(raw))}, nil
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// checkSizes refuses a manifest whose sizes no real image has, before any
// blob it names is read: a negative size, or a config larger than a store
// holds.
func checkSizes(m *v1.Manifest) error {
	if m.Config.Size < 0 || m.Config.Size > maxConfigSize {
		return fmt.Errorf("config %s: size %d is not between 0 and %d", m.Config.Digest, m.Config.Size, maxConfigSize)
	}
	for _, l := range m.Layers {
		if l.Size < 0 {
			return fmt.Errorf("layer %s: negative size %d", l.Digest, l.Size)
		}
	}
	return nil
}
