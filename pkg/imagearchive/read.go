package imagearchive

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/oci"
)

// archiveFS is read access to the files of an archive: a tar file or a
// directory.
type archiveFS interface {
	open(name string) (io.ReadCloser, error)
	size(name string) (int64, error)
	exists(name string) bool
	describe() string
}

// Read reads what `kiln load` accepts: a docker archive (`docker
// save` format, manifest.json) or an OCI image layout, as a tar file (plain
// or compressed with gzip, bzip2, xz or zstd: pkg/archive decompresses it)
// or as a directory. An archive with
// both an OCI index.json and a manifest.json (docker 25 and later) is read
// as OCI.
//
// Reading is lazy: only manifests, configs and the tar's table of contents
// are read here; layers are read when used. A plain tar file is opened once
// and read in place; a compressed one is first decompressed into an
// anonymous temp file (unlinked at once, so nothing is left behind).
//
// Items of an OCI archive take their ref from the io.containerd.image.name
// annotation, else from org.opencontainers.image.ref.name (which other tools
// may have set to a bare tag). A docker archive gives one item per RepoTag
// (one untagged item for an image without tags); its images get an OCI
// manifest whose layers keep the archive's compression (plain tar layers
// stay uncompressed, with the diff ID as digest).
func Read(p string) ([]Item, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("reading archive: %w", err)
	}
	var afs archiveFS
	if fi.IsDir() {
		root, err := os.OpenRoot(p)
		if err != nil {
			return nil, fmt.Errorf("reading archive %s: %w", p, err)
		}
		afs = &dirFS{root: root, path: p}
	} else {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("reading archive: %w", err)
		}
		tfs, err := openTarFS(f, p)
		if err != nil {
			return nil, err
		}
		afs = tfs
	}
	return readFS(afs, p)
}

// ReadStream is Read for a tar archive that comes as a stream (`kiln
// load` from stdin), called name in errors: it is copied to an anonymous
// temporary file first (unlinked at once, so nothing is left behind).
func ReadStream(r io.Reader, name string) ([]Item, error) {
	tmp, err := os.CreateTemp("", "kiln-archive-*")
	if err != nil {
		return nil, fmt.Errorf("reading archive %s: %w", name, err)
	}
	os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, r); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("reading archive %s: %w", name, err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("reading archive %s: %w", name, err)
	}
	tfs, err := openTarFS(tmp, name)
	if err != nil {
		return nil, err
	}
	return readFS(tfs, name)
}

// readFS reads the archive afs (called p in errors): OCI when it has an
// index.json, docker when it has a manifest.json.
func readFS(afs archiveFS, p string) ([]Item, error) {
	switch {
	case afs.exists("index.json"):
		items, err := readOCI(afs)
		if err != nil {
			return nil, fmt.Errorf("reading OCI archive %s: %w", p, err)
		}
		return items, nil
	case afs.exists("manifest.json"):
		items, err := readDocker(afs)
		if err != nil {
			return nil, fmt.Errorf("reading docker archive %s: %w", p, err)
		}
		return items, nil
	}
	return nil, fmt.Errorf("reading archive %s: neither an OCI layout (index.json) nor a docker archive (manifest.json)", p)
}

// dirFS reads an unpacked archive; os.Root keeps every path inside it.
type dirFS struct {
	root *os.Root
	path string
}

func (d *dirFS) open(name string) (io.ReadCloser, error) {
	f, err := d.root.Open(name)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s in %s is not a regular file", name, d.path)
	}
	return f, nil
}

func (d *dirFS) size(name string) (int64, error) {
	fi, err := d.root.Stat(name)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (d *dirFS) exists(name string) bool {
	fi, err := d.root.Stat(name)
	return err == nil && fi.Mode().IsRegular()
}

func (d *dirFS) describe() string { return d.path }

// tarEntry locates one member of a tar file.
type tarEntry struct {
	off, size int64
	link      string // target for symlinks and hard links
}

// tarFS reads members of an uncompressed tar file in place.
type tarFS struct {
	f       *os.File
	path    string
	entries map[string]tarEntry
}

// openTarFS indexes the members of the tar file f (called p in errors),
// decompressing it first if needed. It takes f over, closing it on error.
func openTarFS(f *os.File, p string) (*tarFS, error) {
	// One sniffer for every compressed input kiln reads (build -, ADD,
	// load): gzip, bzip2, xz or zstd, bounded by archive.CheckExpansion.
	dec, format, err := archive.Decompress(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("reading archive %s: %w", p, err)
	}
	defer dec.Close()
	if format == "" {
		dec = nil
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("reading archive %s: %w", p, err)
		}
	}
	if dec != nil {
		tmp, err := os.CreateTemp("", "kiln-archive-*")
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("reading archive %s: %w", p, err)
		}
		os.Remove(tmp.Name()) // anonymous: the data lives as long as the descriptor
		_, err = io.Copy(tmp, dec)
		f.Close()
		if err != nil {
			tmp.Close()
			return nil, fmt.Errorf("reading archive %s: decompressing: %w", p, err)
		}
		f = tmp
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("reading archive %s: %w", p, err)
		}
	}
	t := &tarFS{f: f, path: p, entries: map[string]tarEntry{}}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("reading archive %s: %w", p, err)
		}
		name := cleanArchivePath(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeReg, 0: // 0 is the pre-POSIX regular file flag
			off, err := f.Seek(0, io.SeekCurrent)
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("reading archive %s: %w", p, err)
			}
			t.entries[name] = tarEntry{off: off, size: hdr.Size}
		case tar.TypeSymlink:
			target := hdr.Linkname
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(name), target)
			}
			t.entries[name] = tarEntry{link: cleanArchivePath(target)}
		case tar.TypeLink:
			t.entries[name] = tarEntry{link: cleanArchivePath(hdr.Linkname)}
		}
	}
	return t, nil
}

// cleanArchivePath normalises a member name: no leading "./" or "/", no
// "..". Names are only ever looked up, never created, so this is about
// matching, not safety.
func cleanArchivePath(n string) string {
	n = path.Clean("/" + n)
	return n[1:]
}

func (t *tarFS) lookup(name string) (tarEntry, error) {
	name = cleanArchivePath(name)
	for range 16 {
		e, ok := t.entries[name]
		if !ok {
			return tarEntry{}, fmt.Errorf("%s not in archive %s: %w", name, t.path, fs.ErrNotExist)
		}
		if e.link == "" {
			return e, nil
		}
		name = e.link
	}
	return tarEntry{}, fmt.Errorf("%s in archive %s: too many links", name, t.path)
}

func (t *tarFS) open(name string) (io.ReadCloser, error) {
	e, err := t.lookup(name)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(io.NewSectionReader(t.f, e.off, e.size)), nil
}

func (t *tarFS) size(name string) (int64, error) {
	e, err := t.lookup(name)
	return e.size, err
}

func (t *tarFS) exists(name string) bool {
	_, err := t.lookup(name)
	return err == nil
}

func (t *tarFS) describe() string { return t.path }

// layoutSource serves blobs of an OCI layout inside an archiveFS.
type layoutSource struct{ fs archiveFS }

// OpenBlob implements oci.BlobSource.
func (l layoutSource) OpenBlob(h v1.Hash) (io.ReadCloser, error) {
	if err := oci.CheckDigest(h); err != nil {
		return nil, err
	}
	return l.fs.open(ociBlobName(h))
}

// readOCI reads the index.json of an OCI layout.
func readOCI(afs archiveFS) ([]Item, error) {
	rc, err := afs.open("index.json")
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(rc, oci.MaxManifestSize+1))
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	src := layoutSource{afs}
	var items []Item
	for _, d := range im.Manifests {
		ref := d.Annotations[oci.AnnotationContainerdName]
		if ref == "" {
			ref = d.Annotations[oci.AnnotationRefName]
		}
		if d.MediaType == "" { // not allowed by the spec, but seen: sniff
			raw, err := oci.ReadBlob(src, d.Digest, oci.MaxManifestSize)
			if err != nil {
				return nil, fmt.Errorf("ref %q: %w", ref, err)
			}
			if d.MediaType, _, err = oci.ParseManifest(raw, ""); err != nil {
				return nil, fmt.Errorf("ref %q: manifest %s: %w", ref, d.Digest, err)
			}
		}
		switch {
		case d.MediaType.IsIndex():
			idx, err := oci.LoadIndex(src, d.Digest, d.MediaType)
			if err != nil {
				return nil, fmt.Errorf("ref %q: %w", ref, err)
			}
			items = append(items, Item{Ref: ref, Artifact: idx})
		case d.MediaType.IsImage():
			img, err := oci.LoadImage(src, d.Digest, d.MediaType)
			if err != nil {
				return nil, fmt.Errorf("ref %q: %w", ref, err)
			}
			items = append(items, Item{Ref: ref, Artifact: img})
		default:
			return nil, fmt.Errorf("ref %q: manifest %s has media type %q, which kiln cannot load", ref, d.Digest, d.MediaType)
		}
	}
	return items, nil
}

// readDocker reads the manifest.json of a docker archive.
func readDocker(afs archiveFS) ([]Item, error) {
	rc, err := afs.open("manifest.json")
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(rc, oci.MaxManifestSize+1))
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	var entries []dockerManifestEntry
	if err := json.Unmarshal(data, &entries); err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	var items []Item
	for n, e := range entries {
		core, err := newDockerImage(afs, e)
		if err != nil {
			return nil, fmt.Errorf("manifest.json entry %d (%v): %w", n, e.RepoTags, err)
		}
		img, err := partial.CompressedToImage(core)
		if err != nil {
			return nil, fmt.Errorf("manifest.json entry %d (%v): %w", n, e.RepoTags, err)
		}
		if len(e.RepoTags) == 0 {
			items = append(items, Item{Artifact: img})
		}
		for _, t := range e.RepoTags {
			items = append(items, Item{Ref: t, Artifact: img})
		}
	}
	return items, nil
}

// dockerImage is an image from a docker archive. Its manifest is made up
// from the config and the layer files; compressed layers are hashed the
// first time the manifest is needed.
type dockerImage struct {
	rawCfg []byte
	cfgDig v1.Hash
	layers []*dockerLayer

	once sync.Once
	raw  []byte
	err  error
}

func newDockerImage(afs archiveFS, e dockerManifestEntry) (*dockerImage, error) {
	rc, err := afs.open(e.Config)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	rawCfg, err := io.ReadAll(io.LimitReader(rc, oci.MaxConfigSize+1))
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", e.Config, err)
	}
	if len(rawCfg) > oci.MaxConfigSize {
		return nil, fmt.Errorf("config %s is larger than %d bytes", e.Config, oci.MaxConfigSize)
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(rawCfg))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", e.Config, err)
	}
	if len(cf.RootFS.DiffIDs) != len(e.Layers) {
		return nil, fmt.Errorf("config %s lists %d diff IDs for %d layers", e.Config, len(cf.RootFS.DiffIDs), len(e.Layers))
	}
	img := &dockerImage{rawCfg: rawCfg, cfgDig: oci.SHA256(rawCfg)}
	for i, name := range e.Layers {
		size, err := afs.size(name)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", name, err)
		}
		l := &dockerLayer{fs: afs, name: name, size: size, diffID: cf.RootFS.DiffIDs[i]}
		if err := l.sniff(); err != nil {
			return nil, err
		}
		img.layers = append(img.layers, l)
	}
	return img, nil
}

// build computes the manifest.
func (i *dockerImage) build() ([]byte, error) {
	i.once.Do(func() {
		m := v1.Manifest{
			SchemaVersion: 2,
			MediaType:     types.OCIManifestSchema1,
			Config:        v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(i.rawCfg)), Digest: i.cfgDig},
			Layers:        []v1.Descriptor{},
		}
		for _, l := range i.layers {
			d, err := l.Digest()
			if err != nil {
				i.err = err
				return
			}
			m.Layers = append(m.Layers, v1.Descriptor{MediaType: l.mt, Size: l.size, Digest: d})
		}
		i.raw, i.err = oci.MarshalJSON(m)
	})
	return i.raw, i.err
}

// RawConfigFile implements partial.CompressedImageCore.
func (i *dockerImage) RawConfigFile() ([]byte, error) { return bytes.Clone(i.rawCfg), nil }

// MediaType implements partial.CompressedImageCore.
func (i *dockerImage) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// RawManifest implements partial.CompressedImageCore.
func (i *dockerImage) RawManifest() ([]byte, error) {
	raw, err := i.build()
	return bytes.Clone(raw), err
}

// LayerByDigest implements partial.CompressedImageCore.
func (i *dockerImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if h == i.cfgDig {
		return partial.ConfigLayer(i)
	}
	for _, l := range i.layers {
		if d, err := l.Digest(); err == nil && d == h {
			return l, nil
		}
	}
	return nil, fmt.Errorf("docker archive image has no layer %s", h)
}

// dockerLayer is one layer file of a docker archive. It is a
// partial.CompressedLayer (plus DiffID): partial.CompressedToImage supplies
// Uncompressed, which detects the compression from the bytes.
type dockerLayer struct {
	fs     archiveFS
	name   string
	size   int64
	diffID v1.Hash
	kind   archive.Compression
	mt     types.MediaType

	once   sync.Once
	digest v1.Hash
	err    error
}

// sniff reads the first bytes to learn the compression.
func (l *dockerLayer) sniff() error {
	rc, err := l.fs.open(l.name)
	if err != nil {
		return fmt.Errorf("layer %s: %w", l.name, err)
	}
	defer rc.Close()
	var head [archive.SniffLen]byte
	n, _ := io.ReadFull(rc, head[:])
	switch format := archive.Sniff(head[:n]); format {
	case "gzip":
		l.kind, l.mt = archive.Gzip, types.OCILayer
	case "zstd":
		l.kind, l.mt = archive.Zstd, types.OCILayerZStd
	case "":
		l.kind, l.mt = archive.None, types.OCIUncompressedLayer
	default:
		return fmt.Errorf("layer %s: %s-compressed: a layer is gzip, zstd or a plain tar", l.name, format)
	}
	return nil
}

// Digest implements v1.Layer: the diff ID for a plain tar, else the hash
// of the file (computed once).
func (l *dockerLayer) Digest() (v1.Hash, error) {
	if l.kind == archive.None {
		return l.diffID, nil
	}
	l.once.Do(func() {
		rc, err := l.fs.open(l.name)
		if err != nil {
			l.err = fmt.Errorf("layer %s: %w", l.name, err)
			return
		}
		defer rc.Close()
		l.digest, _, l.err = v1.SHA256(rc)
		if l.err != nil {
			l.err = fmt.Errorf("layer %s: %w", l.name, l.err)
		}
	})
	return l.digest, l.err
}

// DiffID implements v1.Layer.
func (l *dockerLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }

// Size implements v1.Layer.
func (l *dockerLayer) Size() (int64, error) { return l.size, nil }

// MediaType implements v1.Layer.
func (l *dockerLayer) MediaType() (types.MediaType, error) { return l.mt, nil }

// Compressed implements v1.Layer: the file as it is in the archive.
func (l *dockerLayer) Compressed() (io.ReadCloser, error) { return l.fs.open(l.name) }
