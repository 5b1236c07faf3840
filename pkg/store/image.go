package store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-build/kiln/pkg/oci"
)

const (
	maxManifestSize = oci.MaxManifestSize
	maxConfigSize   = oci.MaxConfigSize
	// layerWorkers is how many layers WriteImage copies at once.
	layerWorkers = 3
)

// blobSource is the store as an oci.BlobSource: a held blob, or one
// fetched from its recorded source (openBlob, source.go).
type blobSource struct{ s *Store }

// OpenBlob implements oci.BlobSource.
func (b blobSource) OpenBlob(h v1.Hash) (io.ReadCloser, error) { return b.s.openBlob(h) }

// blobs is the store as an oci.BlobSource.
func (s *Store) blobs() oci.BlobSource { return blobSource{s} }

// Image returns the stored image with manifest digest h. Its manifest and
// config are read now; its layers are Store.Layer values read on demand.
func (s *Store) Image(h v1.Hash) (v1.Image, error) {
	if err := checkHash(h); err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	return oci.LoadImage(s.blobs(), h, "")
}

// Index returns the stored image index with digest h.
func (s *Store) Index(h v1.Hash) (v1.ImageIndex, error) {
	if err := checkHash(h); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	return oci.LoadIndex(s.blobs(), h, "")
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
	raw, err := oci.ReadBlob(s.blobs(), h, maxManifestSize)
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt, m, err := oci.ParseManifest(raw, "")
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("blob %s: %w", h, err)
	}
	d := v1.Descriptor{MediaType: mt, Digest: h, Size: int64(len(raw))}
	if !mt.IsIndex() && m.Config != nil {
		if rawCfg, err := oci.ReadBlob(s.blobs(), m.Config.Digest, maxConfigSize); err == nil {
			d.Platform = platformOf(rawCfg)
		}
	}
	return d, nil
}

// platformOf returns the platform recorded in an image config, if any.
func platformOf(rawCfg []byte) *v1.Platform { return oci.ConfigPlatform(rawCfg) }

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
	pmt, _, err := oci.ParseManifest(raw, mt)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("writing image %s: %w", digest, err)
	}
	if mt == "" {
		mt = pmt
	}
	if mt.IsIndex() {
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
	// Both at once: their fsyncs then wait for the same commit. Nothing
	// names the manifest before the caller tags it.
	var g errgroup.Group
	g.Go(func() error {
		if err := s.writeBytes(m.Config.Digest, rawCfg); err != nil {
			return fmt.Errorf("writing image %s: config: %w", digest, err)
		}
		return nil
	})
	if err := s.writeBytes(digest, raw); err != nil {
		g.Wait()
		return v1.Descriptor{}, fmt.Errorf("writing image %s: manifest: %w", digest, err)
	}
	if err := g.Wait(); err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Digest: digest, Size: int64(len(raw)), Platform: platformOf(rawCfg)}, nil
}

// writeLayers copies the layers the store lacks, a few at a time.
func (s *Store) writeLayers(ctx context.Context, img v1.Image, imgDigest v1.Hash, layers []v1.Descriptor, wo *writeOpts) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(layerWorkers)
	seen := map[v1.Hash]bool{}
	kept := map[v1.Hash]string{} // sources the image depends on
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
				// push mounts it from there (a hint). One left in its
				// registry is fetched only if read, and the image depends
				// on that record: it is kept, synced, before the image's
				// ref is written.
				if present {
					if err := s.RecordSource(d.Digest, repo); err != nil {
						return fmt.Errorf("writing image %s: %w", imgDigest, err)
					}
				} else {
					kept[d.Digest] = repo
				}
				continue
			}
			if present {
				continue
			}
			if srcs := s.Sources(d.Digest); len(srcs) > 0 {
				kept[d.Digest] = srcs[0] // a hint until now
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
	if err := s.keepSources(kept); err != nil {
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
	pmt, _, err := oci.ParseManifest(raw, mt)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("writing index %s: %w", digest, err)
	}
	if mt == "" {
		mt = pmt
	}
	if !mt.IsIndex() {
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
		case c.MediaType.IsIndex():
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
