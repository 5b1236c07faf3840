package oci

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"unicode"
	"unicode/utf8"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/pkg/archive"
)

const (
	// MaxManifestSize bounds manifests and indexes read into memory (the
	// limit registries apply too).
	MaxManifestSize = 4 << 20
	// MaxConfigSize bounds image configs read into memory.
	MaxConfigSize = 64 << 20

	// AnnotationRefName is the OCI annotation that names a ref in an
	// image layout's index.json.
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// AnnotationContainerdName is containerd's annotation for the full
	// image name; layouts written for export carry it next to
	// AnnotationRefName.
	AnnotationContainerdName = "io.containerd.image.name"
)

// BlobSource opens blobs by digest: kiln's store, or an OCI image layout
// in a directory or a tar file being read.
type BlobSource interface {
	OpenBlob(h v1.Hash) (io.ReadCloser, error)
}

// CheckDigest refuses a digest that is not a well-formed sha256 one (the
// only algorithm kiln stores and names files by).
func CheckDigest(h v1.Hash) error {
	if h.Algorithm != "sha256" {
		return fmt.Errorf("unsupported digest %q: only sha256 is supported", h.String())
	}
	if len(h.Hex) != 64 {
		return fmt.Errorf("malformed digest %q", h.String())
	}
	for _, c := range h.Hex {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("malformed digest %q", h.String())
		}
	}
	return nil
}

// CheckRef rejects refs that cannot be stored in an index.json or printed
// sensibly: empty, too long, not UTF-8, or holding white space or control
// characters.
func CheckRef(ref string) error {
	if ref == "" {
		return fmt.Errorf("empty ref")
	}
	if len(ref) > 4096 || !utf8.ValidString(ref) {
		return fmt.Errorf("invalid ref %q", ref)
	}
	for _, r := range ref {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("invalid ref %q: contains white space or control characters", ref)
		}
	}
	return nil
}

// SHA256 is the sha256 digest of data.
func SHA256(data []byte) v1.Hash {
	sum := sha256.Sum256(data)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// MarshalJSON encodes v as manifests and index.json files are written:
// compact, without HTML escaping and without a trailing newline.
func MarshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Manifest has the fields of every manifest kind kiln walks: image
// manifests, indexes and artifact manifests.
type Manifest struct {
	SchemaVersion int64           `json:"schemaVersion"`
	MediaType     types.MediaType `json:"mediaType,omitempty"`
	Config        *v1.Descriptor  `json:"config,omitempty"`
	Layers        []v1.Descriptor `json:"layers,omitempty"`
	Manifests     []v1.Descriptor `json:"manifests,omitempty"`
	Subject       *v1.Descriptor  `json:"subject,omitempty"`
}

// ParseManifest parses raw and works out its media type: the mediaType
// field, else hint, else from the shape (manifests → index, config →
// image).
func ParseManifest(raw []byte, hint types.MediaType) (types.MediaType, *Manifest, error) {
	var m Manifest
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

// ReadBlob reads a small blob of at most limit bytes and verifies its
// digest.
func ReadBlob(src BlobSource, h v1.Hash, limit int64) ([]byte, error) {
	rc, err := src.OpenBlob(h)
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
	if got := SHA256(data); h.Algorithm == "sha256" && got != h {
		return nil, fmt.Errorf("blob %s is corrupt: its content has digest %s", h, got)
	}
	return data, nil
}

// lazyImage is a v1.Image whose manifest and config are in memory and whose
// layers are read from a BlobSource only when asked.
type lazyImage struct {
	src     BlobSource
	digest  v1.Hash
	mt      types.MediaType
	raw     []byte
	m       *v1.Manifest
	rawCfg  []byte
	diffIDs []v1.Hash
}

var _ v1.Image = (*lazyImage)(nil)

// LoadImage reads manifest h (hint: its media type when the manifest does
// not say) and its config from src. The manifest bytes are kept exactly
// as read; layers are BlobLayers read from src when used.
func LoadImage(src BlobSource, h v1.Hash, hint types.MediaType) (v1.Image, error) {
	raw, err := ReadBlob(src, h, MaxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", h, err)
	}
	mt, _, err := ParseManifest(raw, hint)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", h, err)
	}
	if mt.IsIndex() {
		return nil, fmt.Errorf("%s is an image index (%s), not an image", h, mt)
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("image %s: parsing manifest: %w", h, err)
	}
	rawCfg, err := ReadBlob(src, m.Config.Digest, MaxConfigSize)
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
	return NewBlobLayer(i.src, i.m.Layers[idx], diffID)
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

// RawManifest implements v1.Image: the bytes read, unchanged.
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

// lazyIndex is a v1.ImageIndex read from a BlobSource.
type lazyIndex struct {
	src    BlobSource
	digest v1.Hash
	mt     types.MediaType
	raw    []byte
	im     *v1.IndexManifest
}

var _ v1.ImageIndex = (*lazyIndex)(nil)

// LoadIndex reads index h (hint: its media type when the index does not
// say) from src; its children are read when asked for.
func LoadIndex(src BlobSource, h v1.Hash, hint types.MediaType) (v1.ImageIndex, error) {
	raw, err := ReadBlob(src, h, MaxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", h, err)
	}
	mt, _, err := ParseManifest(raw, hint)
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", h, err)
	}
	if !mt.IsIndex() {
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
	return LoadImage(x.src, h, d.MediaType)
}

// ImageIndex implements v1.ImageIndex.
func (x *lazyIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	d, err := x.child(h)
	if err != nil {
		return nil, err
	}
	return LoadIndex(x.src, h, d.MediaType)
}

// BlobLayer is a lazy layer whose bytes come from a BlobSource.
type BlobLayer struct {
	src    BlobSource
	desc   v1.Descriptor
	diffID v1.Hash
}

// NewBlobLayer is the layer desc of src; diffID may be unknown (zero), and
// DiffID then says so.
func NewBlobLayer(src BlobSource, desc v1.Descriptor, diffID v1.Hash) *BlobLayer {
	return &BlobLayer{src: src, desc: *desc.DeepCopy(), diffID: diffID}
}

// Digest implements v1.Layer.
func (l *BlobLayer) Digest() (v1.Hash, error) { return l.desc.Digest, nil }

// DiffID implements v1.Layer.
func (l *BlobLayer) DiffID() (v1.Hash, error) {
	if l.diffID == (v1.Hash{}) {
		return v1.Hash{}, fmt.Errorf("layer %s: diff ID unknown (no matching rootfs.diff_ids entry in the config)", l.desc.Digest)
	}
	return l.diffID, nil
}

// Size implements v1.Layer.
func (l *BlobLayer) Size() (int64, error) { return l.desc.Size, nil }

// MediaType implements v1.Layer.
func (l *BlobLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }

// Descriptor lets partial.Descriptor (and so mutate and remote) keep the
// layer's annotations and URLs.
func (l *BlobLayer) Descriptor() (*v1.Descriptor, error) { return l.desc.DeepCopy(), nil }

// Compressed implements v1.Layer: the blob as it is.
func (l *BlobLayer) Compressed() (io.ReadCloser, error) { return l.src.OpenBlob(l.desc.Digest) }

// Uncompressed implements v1.Layer: the blob decompressed by media type.
func (l *BlobLayer) Uncompressed() (io.ReadCloser, error) {
	rc, err := l.src.OpenBlob(l.desc.Digest)
	if err != nil {
		return nil, err
	}
	u, err := Decompress(rc, l.desc.MediaType)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", l.desc.Digest, err)
	}
	return u, nil
}

// Decompress wraps a compressed layer stream rc of media type mt in
// package archive's decompressor for the compression the media type names
// (klauspost's gzip and zstd, which decode gzip about a third faster than
// the standard library's that go-containerregistry's layers use), which
// decompresses on a goroutine of its own, ahead of the reader
// (archive.NewReaderAhead), or for media types that do not say, the one
// its magic number shows. Closing the result closes rc first (a read of
// it under way returns), then stops the decompressor; on error rc is
// closed.
func Decompress(rc io.ReadCloser, mt types.MediaType) (io.ReadCloser, error) {
	var (
		u   io.ReadCloser
		err error
	)
	if c, ok := archive.CompressionOf(mt); ok {
		u, err = archive.NewReaderAhead(rc, c)
	} else {
		u, _, err = archive.Decompress(rc)
	}
	if err != nil {
		rc.Close()
		return nil, err
	}
	return &readCloser{Reader: u, close: func() error { err := rc.Close(); u.Close(); return err }}, nil
}

// readCloser pairs a reader with a close function.
type readCloser struct {
	io.Reader
	close func() error
}

func (r *readCloser) Close() error { return r.close() }

// ConfigPlatform returns the platform an image config records, if any.
func ConfigPlatform(rawCfg []byte) *v1.Platform {
	cf, err := v1.ParseConfigFile(bytes.NewReader(rawCfg))
	if err != nil {
		return nil
	}
	return cf.Platform()
}
