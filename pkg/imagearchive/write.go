package imagearchive

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/oci"
)

// Item is one image or index to write to an archive or that was read from
// one. Ref may be empty.
type Item struct {
	Ref      string
	Artifact oci.Artifact
}

// checkItems validates items: an image or an index each, refs well formed
// and not repeated.
func checkItems(items []Item) error {
	refs := map[string]bool{}
	for n, it := range items {
		if err := oci.Check(it.Artifact); err != nil {
			return fmt.Errorf("item %d (ref %q): %w", n, it.Ref, err)
		}
		if it.Ref == "" {
			continue
		}
		if err := oci.CheckRef(it.Ref); err != nil {
			return fmt.Errorf("item %d: %w", n, err)
		}
		if refs[it.Ref] {
			return fmt.Errorf("ref %q appears more than once", it.Ref)
		}
		refs[it.Ref] = true
	}
	return nil
}

// archiveBlob is one file of an archive being written.
type archiveBlob struct {
	name   string
	digest v1.Hash // empty for generated files (index.json, manifest.json, ...)
	size   int64
	data   []byte                        // small blobs and generated files
	open   func() (io.ReadCloser, error) // layers, read when written
}

// archivePlan collects the files of an archive, deduplicated by name.
type archivePlan struct {
	files map[string]*archiveBlob
}

func newArchivePlan() *archivePlan { return &archivePlan{files: map[string]*archiveBlob{}} }

func (p *archivePlan) addData(name string, digest v1.Hash, data []byte) {
	if _, ok := p.files[name]; !ok {
		p.files[name] = &archiveBlob{name: name, digest: digest, size: int64(len(data)), data: data}
	}
}

func (p *archivePlan) addLazy(name string, d v1.Descriptor, open func() (io.ReadCloser, error)) {
	if _, ok := p.files[name]; !ok {
		p.files[name] = &archiveBlob{name: name, digest: d.Digest, size: d.Size, open: open}
	}
}

// imageParts are the pieces of an image an archive needs.
type imageParts struct {
	desc   v1.Descriptor
	raw    []byte
	m      *v1.Manifest
	rawCfg []byte
}

// imagePartsOf reads the manifest and config of img and checks them.
func imagePartsOf(img v1.Image) (*imageParts, error) {
	raw, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	digest := oci.SHA256(raw)
	mt, err := img.MediaType()
	if err != nil {
		return nil, fmt.Errorf("image %s: media type: %w", digest, err)
	}
	pmt, _, err := oci.ParseManifest(raw, mt)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", digest, err)
	}
	if mt == "" {
		mt = pmt
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("image %s: parsing manifest: %w", digest, err)
	}
	if err := oci.CheckDigest(m.Config.Digest); err != nil {
		return nil, fmt.Errorf("image %s: config: %w", digest, err)
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", digest, err)
	}
	if got := oci.SHA256(rawCfg); got != m.Config.Digest {
		return nil, fmt.Errorf("image %s: config has digest %s, manifest says %s", digest, got, m.Config.Digest)
	}
	for _, l := range m.Layers {
		if err := oci.CheckDigest(l.Digest); err != nil {
			return nil, fmt.Errorf("image %s: layer: %w", digest, err)
		}
	}
	return &imageParts{
		desc:   v1.Descriptor{MediaType: mt, Digest: digest, Size: int64(len(raw)), Platform: oci.ConfigPlatform(rawCfg)},
		raw:    raw,
		m:      m,
		rawCfg: rawCfg,
	}, nil
}

func layerOpener(img v1.Image, h v1.Hash) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		l, err := img.LayerByDigest(h)
		if err != nil {
			return nil, err
		}
		return l.Compressed()
	}
}

func ociBlobName(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// addOCIImage adds an image's blobs in OCI layout naming.
func (p *archivePlan) addOCIImage(img v1.Image) (v1.Descriptor, error) {
	parts, err := imagePartsOf(img)
	if err != nil {
		return v1.Descriptor{}, err
	}
	for _, l := range parts.m.Layers {
		p.addLazy(ociBlobName(l.Digest), l, layerOpener(img, l.Digest))
	}
	p.addData(ociBlobName(parts.m.Config.Digest), parts.m.Config.Digest, parts.rawCfg)
	p.addData(ociBlobName(parts.desc.Digest), parts.desc.Digest, parts.raw)
	return parts.desc, nil
}

// addOCIIndex adds an index and its children.
func (p *archivePlan) addOCIIndex(idx v1.ImageIndex) (v1.Descriptor, error) {
	raw, err := idx.RawManifest()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("index manifest: %w", err)
	}
	digest := oci.SHA256(raw)
	mt, err := idx.MediaType()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("index %s: media type: %w", digest, err)
	}
	if mt == "" {
		mt = types.OCIImageIndex
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("index %s: %w", digest, err)
	}
	for _, c := range im.Manifests {
		var got v1.Descriptor
		switch {
		case c.MediaType.IsIndex():
			child, err := idx.ImageIndex(c.Digest)
			if err != nil {
				return v1.Descriptor{}, fmt.Errorf("index %s: child %s: %w", digest, c.Digest, err)
			}
			if got, err = p.addOCIIndex(child); err != nil {
				return v1.Descriptor{}, fmt.Errorf("index %s: %w", digest, err)
			}
		case c.MediaType.IsImage():
			child, err := idx.Image(c.Digest)
			if err != nil {
				return v1.Descriptor{}, fmt.Errorf("index %s: child %s: %w", digest, c.Digest, err)
			}
			if got, err = p.addOCIImage(child); err != nil {
				return v1.Descriptor{}, fmt.Errorf("index %s: %w", digest, err)
			}
		default:
			return v1.Descriptor{}, fmt.Errorf("index %s: child %s has media type %q, which kiln cannot export", digest, c.Digest, c.MediaType)
		}
		if got.Digest != c.Digest {
			return v1.Descriptor{}, fmt.Errorf("index %s: child %s has digest %s", digest, c.Digest, got.Digest)
		}
	}
	p.addData(ociBlobName(digest), digest, raw)
	return v1.Descriptor{MediaType: mt, Digest: digest, Size: int64(len(raw))}, nil
}

// refAnnotations name ref in an index.json entry, as containerd and the
// OCI layout spec both read it.
func refAnnotations(ref string) map[string]string {
	return map[string]string{oci.AnnotationRefName: ref, oci.AnnotationContainerdName: ref}
}

// ociPlan plans the blobs of items in OCI layout naming and gives their
// index.json entries in order: named ones annotated with their ref,
// unnamed ones once per digest.
func ociPlan(items []Item) (*archivePlan, []v1.Descriptor, error) {
	p := newArchivePlan()
	entries := []v1.Descriptor{}
	seenUnnamed := map[v1.Hash]bool{}
	for _, it := range items {
		var (
			d   v1.Descriptor
			err error
		)
		if img, ok := oci.AsImage(it.Artifact); ok {
			d, err = p.addOCIImage(img)
		} else {
			idx, _ := oci.AsIndex(it.Artifact)
			d, err = p.addOCIIndex(idx)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("ref %q: %w", it.Ref, err)
		}
		if it.Ref == "" {
			if seenUnnamed[d.Digest] {
				continue
			}
			seenUnnamed[d.Digest] = true
		} else {
			d.Annotations = refAnnotations(it.Ref)
		}
		entries = append(entries, d)
	}
	return p, entries, nil
}

// WriteOCIArchive writes items as an OCI image layout in a tar stream (what
// `skopeo copy oci-archive:` and `podman load` read), with the same index
// annotations as WriteLayout. The stream is deterministic: entries are
// sorted, owners are 0 and times fixed, so the same items give the same
// bytes. Layers are streamed and verified against their digests; on a
// mismatch an error is returned and the output must be discarded.
func WriteOCIArchive(w io.Writer, items []Item) error {
	if err := checkItems(items); err != nil {
		return fmt.Errorf("writing OCI archive: %w", err)
	}
	p, entries, err := ociPlan(items)
	if err != nil {
		return fmt.Errorf("writing OCI archive: %w", err)
	}
	index := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: entries}
	idxJSON, err := oci.MarshalJSON(index)
	if err != nil {
		return fmt.Errorf("writing OCI archive: encoding index.json: %w", err)
	}
	layoutJSON, _ := oci.MarshalJSON(oci.ImageLayout{Version: oci.LayoutVersion})
	p.addData("index.json", v1.Hash{}, idxJSON)
	p.addData("oci-layout", v1.Hash{}, layoutJSON)
	if err := p.writeTar(w, []string{"blobs/", "blobs/sha256/"}); err != nil {
		return fmt.Errorf("writing OCI archive: %w", err)
	}
	return nil
}

// dockerManifestEntry is one entry of a docker archive's manifest.json.
type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// dockerRepoTag checks that ref can be a docker RepoTag and splits it into
// repository and tag (latest when ref has none).
func dockerRepoTag(ref string) (repo, tag string, err error) {
	if strings.Contains(ref, "@") {
		return "", "", fmt.Errorf("ref %q has a digest; a docker archive needs repository:tag", ref)
	}
	if _, err := name.ParseReference(ref, name.WeakValidation); err != nil {
		return "", "", fmt.Errorf("ref %q cannot be a docker archive tag: %w", ref, err)
	}
	repo, tag = ref, "latest"
	slash := strings.LastIndex(ref, "/")
	if c := strings.LastIndex(ref, ":"); c > slash {
		repo, tag = ref[:c], ref[c+1:]
	}
	return repo, tag, nil
}

// layerFileExt is the file name extension of a layer in a docker archive.
func layerFileExt(mt types.MediaType) string {
	switch c, _ := archive.CompressionOf(mt); c {
	case archive.Gzip:
		return ".tar.gz"
	case archive.Zstd:
		return ".tar.zst"
	}
	return ".tar"
}

// WriteDockerArchive writes items in the `docker save` format: a tar with
// manifest.json (Config, RepoTags, Layers), repositories, the configs as
// <hex>.json and the layers as stored (compressed layers stay compressed,
// which `docker load`, `podman load` and `skopeo copy docker-archive:` all
// accept). Only image items are allowed; an index is an error naming its
// ref (pick a platform first). Items that are the same image are merged
// into one manifest.json entry with several RepoTags. The stream is
// deterministic like WriteOCIArchive's.
func WriteDockerArchive(w io.Writer, items []Item) error {
	if err := checkItems(items); err != nil {
		return fmt.Errorf("writing docker archive: %w", err)
	}
	p := newArchivePlan()
	var (
		entries []*dockerManifestEntry
		byImage = map[v1.Hash]*dockerManifestEntry{}
		repos   = map[string]map[string]string{}
	)
	for _, it := range items {
		img, ok := oci.AsImage(it.Artifact)
		if !ok {
			return fmt.Errorf("writing docker archive: ref %q is an image index; a docker archive holds single images, choose a platform", it.Ref)
		}
		parts, err := imagePartsOf(img)
		if err != nil {
			return fmt.Errorf("writing docker archive: ref %q: %w", it.Ref, err)
		}
		e := byImage[parts.desc.Digest]
		if e == nil {
			e = &dockerManifestEntry{Config: parts.m.Config.Digest.Hex + ".json", RepoTags: []string{}}
			p.addData(e.Config, parts.m.Config.Digest, parts.rawCfg)
			for _, l := range parts.m.Layers {
				fn := l.Digest.Hex + layerFileExt(l.MediaType)
				p.addLazy(fn, l, layerOpener(img, l.Digest))
				e.Layers = append(e.Layers, fn)
			}
			if e.Layers == nil {
				e.Layers = []string{}
			}
			byImage[parts.desc.Digest] = e
			entries = append(entries, e)
		}
		if it.Ref == "" {
			continue
		}
		repo, tag, err := dockerRepoTag(it.Ref)
		if err != nil {
			return fmt.Errorf("writing docker archive: %w", err)
		}
		e.RepoTags = append(e.RepoTags, repo+":"+tag)
		if n := len(parts.m.Layers); n > 0 {
			if repos[repo] == nil {
				repos[repo] = map[string]string{}
			}
			repos[repo][tag] = parts.m.Layers[n-1].Digest.Hex
		}
	}
	mj, err := oci.MarshalJSON(entries)
	if err != nil {
		return fmt.Errorf("writing docker archive: encoding manifest.json: %w", err)
	}
	rj, err := oci.MarshalJSON(repos)
	if err != nil {
		return fmt.Errorf("writing docker archive: encoding repositories: %w", err)
	}
	p.addData("manifest.json", v1.Hash{}, mj)
	p.addData("repositories", v1.Hash{}, rj)
	if err := p.writeTar(w, nil); err != nil {
		return fmt.Errorf("writing docker archive: %w", err)
	}
	return nil
}

// archiveEpoch is the modification time of every archive entry.
var archiveEpoch = time.Unix(0, 0).UTC()

// writeTar writes dirs and then every planned file, sorted by name, with
// normalised headers.
func (p *archivePlan) writeTar(w io.Writer, dirs []string) error {
	tw := tar.NewWriter(w)
	names := make([]string, 0, len(p.files)+len(dirs))
	for n := range p.files {
		names = append(names, n)
	}
	names = append(names, dirs...)
	sort.Strings(names)
	isDir := map[string]bool{}
	for _, d := range dirs {
		isDir[d] = true
	}
	for _, n := range names {
		if isDir[n] {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: n, Mode: 0o755, ModTime: archiveEpoch, Format: tar.FormatPAX}); err != nil {
				return err
			}
			continue
		}
		b := p.files[n]
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: b.size, ModTime: archiveEpoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		if b.data != nil || b.open == nil {
			if _, err := tw.Write(b.data); err != nil {
				return fmt.Errorf("%s: %w", n, err)
			}
			continue
		}
		if err := copyVerified(tw, b); err != nil {
			return err
		}
	}
	return tw.Close()
}

// copyVerified streams a lazy blob to w, checking size and digest.
func copyVerified(w io.Writer, b *archiveBlob) error {
	rc, err := b.open()
	if err != nil {
		return fmt.Errorf("blob %s: %w", b.digest, err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(rc, b.size))
	if err != nil {
		return fmt.Errorf("blob %s: %w", b.digest, err)
	}
	if n != b.size {
		return fmt.Errorf("blob %s: size mismatch: manifest says %d bytes, got %d", b.digest, b.size, n)
	}
	var one [1]byte
	if m, _ := io.ReadFull(rc, one[:]); m > 0 {
		return fmt.Errorf("blob %s: size mismatch: more than the %d bytes the manifest says", b.digest, b.size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); b.digest.Algorithm == "sha256" && got != b.digest.Hex {
		return fmt.Errorf("blob %s: digest mismatch: content has sha256:%s", b.digest, got)
	}
	return nil
}
