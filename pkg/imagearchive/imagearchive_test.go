package imagearchive

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/archive"
	"github.com/kiln-build/kiln/pkg/oci"
	"github.com/kiln-build/kiln/pkg/store"
)

// manifestOnly has a manifest but is neither an image nor an index.
type manifestOnly struct{}

func (manifestOnly) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (manifestOnly) Digest() (v1.Hash, error)            { return v1.Hash{}, nil }
func (manifestOnly) Size() (int64, error)                { return 0, nil }
func (manifestOnly) RawManifest() ([]byte, error)        { return nil, nil }

func isImage(it Item) bool {
	_, ok := oci.AsImage(it.Artifact)
	return ok
}

// itemImage is the image it holds.
func itemImage(t *testing.T, it Item) v1.Image {
	t.Helper()
	img, ok := oci.AsImage(it.Artifact)
	if !ok {
		t.Fatalf("item %q is not an image", it.Ref)
	}
	return img
}

// itemIndex is the index it holds.
func itemIndex(t *testing.T, it Item) v1.ImageIndex {
	t.Helper()
	idx, ok := oci.AsIndex(it.Artifact)
	if !ok {
		t.Fatalf("item %q is not an index", it.Ref)
	}
	return idx
}

func skopeo(t *testing.T, args ...string) []byte {
	t.Helper()
	path, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skopeo is not installed")
	}
	cmd := exec.Command(path, append([]string{"--insecure-policy"}, args...)...)
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	out, err := cmd.Output()
	t.Logf("skopeo %s: %d bytes of output", strings.Join(args, " "), len(out))
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, ee.Stderr)
		}
		t.Fatalf("skopeo %s: %v", strings.Join(args, " "), err)
	}
	return out
}

type skopeoInspect struct {
	Digest string
	Layers []string
}

func TestWriteLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	a, b := testutil.RandomImage(t, 2), randomOCIImage(t, 1)
	idx, _ := random.Index(64, 1, 2)
	items := []Item{{Ref: "localhost/app:1.0", Artifact: a}, {Ref: "localhost/multi:1", Artifact: idx}, {Artifact: b}}
	if err := WriteLayout(dir, items); err != nil {
		t.Fatal(err)
	}
	if got := testutil.DirNames(t, dir); strings.Join(got, " ") != "blobs index.json oci-layout" {
		t.Fatalf("layout holds %v", got)
	}
	for _, n := range testutil.DirNames(t, filepath.Join(dir, "blobs", "sha256")) {
		if strings.HasPrefix(n, ".") {
			t.Fatalf("temp file %s left in the layout", n)
		}
	}
	var im v1.IndexManifest
	raw, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	if err := json.Unmarshal(raw, &im); err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 3 {
		t.Fatalf("index.json has %d entries: %s", len(im.Manifests), raw)
	}
	for _, d := range im.Manifests {
		if r := d.Annotations[oci.AnnotationRefName]; r != d.Annotations[oci.AnnotationContainerdName] {
			t.Fatalf("annotations differ: %v", d.Annotations)
		}
	}

	// go-containerregistry reads it.
	lp, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(lp); err != nil {
		t.Fatalf("layout does not validate: %v", err)
	}
	// And so do we.
	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Ref != "localhost/app:1.0" || got[1].Ref != "localhost/multi:1" || got[2].Ref != "" {
		t.Fatalf("read back %+v", got)
	}
	testutil.SameImage(t, itemImage(t, got[0]), a)
	testutil.SameImage(t, itemImage(t, got[2]), b)
	if testutil.Digest(t, itemIndex(t, got[1])) != testutil.Digest(t, idx) {
		t.Fatal("index digest differs")
	}

	// An index.json entry without a media type (seen in the wild) is
	// sniffed.
	noMT := strings.Replace(string(raw), `"mediaType":"application/vnd.docker.distribution.manifest.v2+json",`, "", 1)
	if noMT == string(raw) {
		t.Fatalf("test setup: no docker media type in %s", raw)
	}
	os.WriteFile(filepath.Join(dir, "index.json"), []byte(noMT), 0o644)
	if got, err = Read(dir); err != nil || !isImage(got[0]) {
		t.Fatalf("reading an entry without media type: %+v, %v", got, err)
	}
	os.WriteFile(filepath.Join(dir, "index.json"), raw, 0o644)

	// Adding to it: move the ref, add nothing twice.
	if err := WriteLayout(dir, []Item{{Ref: "localhost/app:1.0", Artifact: b}, {Artifact: b}}); err != nil {
		t.Fatal(err)
	}
	got, err = Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("after adding: %d items", len(got))
	}
	if got[0].Ref != "localhost/app:1.0" || testutil.Digest(t, itemImage(t, got[0])) != testutil.Digest(t, b) {
		t.Fatalf("ref not moved: %+v", got[0])
	}

	if _, err := exec.LookPath("skopeo"); err == nil {
		var out skopeoInspect
		json.Unmarshal(skopeo(t, "inspect", "oci:"+dir+":localhost/app:1.0"), &out)
		if out.Digest != testutil.Digest(t, b).String() {
			t.Fatalf("skopeo sees digest %s, want %s", out.Digest, testutil.Digest(t, b))
		}
	}
}

func TestWriteLayoutErrors(t *testing.T) {
	img := testutil.RandomImage(t, 0)
	for _, items := range [][]Item{
		{{Ref: "localhost/x:1"}},
		{{Ref: "localhost/x:1", Artifact: manifestOnly{}}},
		{{Ref: "localhost/x:1", Artifact: img}, {Ref: "localhost/x:1", Artifact: img}},
		{{Ref: "bad ref", Artifact: img}},
	} {
		if err := WriteLayout(t.TempDir(), items); err == nil {
			t.Errorf("WriteLayout(%+v) succeeded", items)
		}
		if err := WriteOCIArchive(io.Discard, items); err == nil {
			t.Errorf("WriteOCIArchive(%+v) succeeded", items)
		}
		if err := WriteDockerArchive(io.Discard, items); err == nil {
			t.Errorf("WriteDockerArchive(%+v) succeeded", items)
		}
	}
}

func tarNames(t *testing.T, data []byte) []string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var names []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.ModTime.Unix() != 0 || hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" {
			t.Fatalf("%s: header not normalised: %+v", hdr.Name, hdr)
		}
		names = append(names, hdr.Name)
	}
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "archive.tar")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWriteOCIArchive(t *testing.T) {
	a := randomOCIImage(t, 3)
	idx, _ := random.Index(64, 1, 2)
	items := []Item{{Ref: "localhost/app:1.0", Artifact: a}, {Ref: "localhost/multi:1", Artifact: idx}}
	var one, two bytes.Buffer
	if err := WriteOCIArchive(&one, items); err != nil {
		t.Fatal(err)
	}
	if err := WriteOCIArchive(&two, items); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one.Bytes(), two.Bytes()) {
		t.Fatal("two writes of the same items differ")
	}
	names := tarNames(t, one.Bytes())
	if !sort.StringsAreSorted(names) || names[0] != "blobs/" || names[len(names)-1] != "oci-layout" {
		t.Fatalf("entries not sorted: %v", names)
	}
	p := writeFile(t, one.Bytes())
	got, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Ref != "localhost/app:1.0" || !oci.IsIndex(got[1].Artifact) {
		t.Fatalf("read back %+v", got)
	}
	testutil.SameImage(t, itemImage(t, got[0]), a)
	if err := validate.Index(itemIndex(t, got[1])); err != nil {
		t.Fatal(err)
	}
	// Loading into a store: a lazily read archive image stores cleanly.
	s := newStore(t)
	d, err := s.WriteImage(context.Background(), itemImage(t, got[0]))
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := s.Image(d.Digest)
	testutil.SameImage(t, stored, a)
	if _, err := s.WriteIndex(context.Background(), itemIndex(t, got[1])); err != nil {
		t.Fatal(err)
	}

	// Compressed archives are read too.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(one.Bytes())
	zw.Close()
	got, err = Read(writeFile(t, gz.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	testutil.SameImage(t, itemImage(t, got[0]), a)

	if _, err := exec.LookPath("skopeo"); err == nil {
		var out skopeoInspect
		json.Unmarshal(skopeo(t, "inspect", "oci-archive:"+p+":localhost/app:1.0"), &out)
		if out.Digest != testutil.Digest(t, a).String() {
			t.Fatalf("skopeo sees digest %s, want %s", out.Digest, testutil.Digest(t, a))
		}
		var single bytes.Buffer
		if err := WriteOCIArchive(&single, []Item{{Artifact: a}}); err != nil {
			t.Fatal(err)
		}
		json.Unmarshal(skopeo(t, "inspect", "oci-archive:"+writeFile(t, single.Bytes())), &out)
		if out.Digest != testutil.Digest(t, a).String() {
			t.Fatalf("skopeo sees digest %s, want %s", out.Digest, testutil.Digest(t, a))
		}
	}
}

func TestWriteDockerArchive(t *testing.T) {
	a, b := testutil.RandomImage(t, 2), testutil.RandomImage(t, 1)
	items := []Item{
		{Ref: "localhost/app:1.0", Artifact: a},
		{Ref: "registry.example.com/team/app:build_1", Artifact: b},
		{Ref: "localhost/app", Artifact: a},
	}
	var one, two bytes.Buffer
	if err := WriteDockerArchive(&one, items); err != nil {
		t.Fatal(err)
	}
	if err := WriteDockerArchive(&two, items); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one.Bytes(), two.Bytes()) {
		t.Fatal("two writes of the same items differ")
	}
	names := tarNames(t, one.Bytes())
	if !sort.StringsAreSorted(names) {
		t.Fatalf("entries not sorted: %v", names)
	}
	p := writeFile(t, one.Bytes())

	mf, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(p) })
	if err != nil {
		t.Fatal(err)
	}
	if len(mf) != 2 || strings.Join(mf[0].RepoTags, ",") != "localhost/app:1.0,localhost/app:latest" ||
		strings.Join(mf[1].RepoTags, ",") != "registry.example.com/team/app:build_1" {
		t.Fatalf("manifest.json = %+v", mf)
	}
	for ref, img := range map[string]v1.Image{"localhost/app:1.0": a, "localhost/app:latest": a, "registry.example.com/team/app:build_1": b} {
		tag, _ := name.NewTag(ref)
		ti, err := tarball.ImageFromPath(p, &tag)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(ti); err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		wc, _ := img.ConfigName()
		gc, _ := ti.ConfigName()
		if wc != gc {
			t.Fatalf("%s: config %s, want %s", ref, gc, wc)
		}
		wl, _ := img.Layers()
		gl, _ := ti.Layers()
		for i := range wl {
			if testutil.Digest(t, wl[i]) != testutil.Digest(t, gl[i]) {
				t.Fatalf("%s: layer %d digest differs", ref, i)
			}
		}
	}
	repos := readTarFile(t, one.Bytes(), "repositories")
	var rm map[string]map[string]string
	if err := json.Unmarshal(repos, &rm); err != nil || rm["localhost/app"]["1.0"] == "" || rm["registry.example.com/team/app"]["build_1"] == "" {
		t.Fatalf("repositories = %s (%v)", repos, err)
	}

	// Our own reader: one item per tag, images that store and validate.
	got, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("read %d items", len(got))
	}
	s := newStore(t)
	for _, it := range got {
		want := a
		if strings.HasPrefix(it.Ref, "registry") {
			want = b
		}
		if err := validate.Image(itemImage(t, it)); err != nil {
			t.Fatalf("%s: %v", it.Ref, err)
		}
		wc, _ := want.ConfigName()
		gc, _ := itemImage(t, it).ConfigName()
		if wc != gc {
			t.Fatalf("%s: config %s, want %s", it.Ref, gc, wc)
		}
		d, err := s.WriteImage(context.Background(), itemImage(t, it))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Tag(it.Ref, d); err != nil {
			t.Fatal(err)
		}
		stored, _ := s.Image(d.Digest)
		if err := validate.Image(stored); err != nil {
			t.Fatal(err)
		}
	}

	if _, err := exec.LookPath("skopeo"); err == nil {
		var out skopeoInspect
		if err := json.Unmarshal(skopeo(t, "inspect", "docker-archive:"+p+":localhost/app:1.0"), &out); err != nil {
			t.Fatal(err)
		}
		if len(out.Layers) != 2 {
			t.Fatalf("skopeo sees %d layers", len(out.Layers))
		}
		// One image with two tags is one manifest.json entry, so skopeo
		// needs no ref to pick it.
		var single bytes.Buffer
		if err := WriteDockerArchive(&single, []Item{{Ref: "localhost/one:1", Artifact: b}, {Ref: "localhost/one:2", Artifact: b}}); err != nil {
			t.Fatal(err)
		}
		sp := writeFile(t, single.Bytes())
		if err := json.Unmarshal(skopeo(t, "inspect", "docker-archive:"+sp), &out); err != nil || len(out.Layers) != 1 {
			t.Fatalf("skopeo inspect of a single-image archive: %+v, %v", out, err)
		}
		var cfg v1.ConfigFile
		if err := json.Unmarshal(skopeo(t, "inspect", "--config", "docker-archive:"+sp), &cfg); err != nil {
			t.Fatal(err)
		}
		if wantCfg, _ := b.ConfigFile(); len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != wantCfg.RootFS.DiffIDs[0] {
			t.Fatalf("skopeo inspect --config: diff IDs %v", cfg.RootFS.DiffIDs)
		}
		dir := filepath.Join(t.TempDir(), "oci")
		skopeo(t, "copy", "docker-archive:"+p+":registry.example.com/team/app:build_1", "oci:"+dir+":copied")
		copied, err := Read(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(copied) != 1 || copied[0].Ref != "copied" {
			t.Fatalf("skopeo's layout: %+v", copied)
		}
		if err := validate.Image(itemImage(t, copied[0])); err != nil {
			t.Fatal(err)
		}
		wantCfg, _ := b.ConfigFile()
		gotCfg, _ := itemImage(t, copied[0]).ConfigFile()
		if len(gotCfg.RootFS.DiffIDs) != 1 || gotCfg.RootFS.DiffIDs[0] != wantCfg.RootFS.DiffIDs[0] {
			t.Fatalf("skopeo copy changed the diff IDs: %v", gotCfg.RootFS.DiffIDs)
		}
	}
}

func readTarFile(t *testing.T, data []byte, name string) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in tar: %v", name, err)
		}
		if hdr.Name == name {
			b, _ := io.ReadAll(tr)
			return b
		}
	}
}

func TestWriteDockerArchiveRejects(t *testing.T) {
	idx, _ := random.Index(64, 1, 2)
	err := WriteDockerArchive(io.Discard, []Item{{Ref: "localhost/multi:1", Artifact: idx}})
	if err == nil || !strings.Contains(err.Error(), "localhost/multi:1") {
		t.Fatalf("index item: %v", err)
	}
	img := testutil.RandomImage(t, 1)
	ref := "localhost/app@" + testutil.Digest(t, img).String()
	err = WriteDockerArchive(io.Discard, []Item{{Ref: ref, Artifact: img}})
	if err == nil || !strings.Contains(err.Error(), ref) {
		t.Fatalf("digest ref: %v", err)
	}
}

// TestReadClassicDockerSave reads an archive in the old `docker save`
// layout: uncompressed layer.tar files in per-layer directories, a
// duplicate layer as a symlink, "./"-prefixed names.
func TestReadClassicDockerSave(t *testing.T) {
	img := testutil.RandomImage(t, 1)
	layers, _ := img.Layers()
	layerTar := testutil.ReadAll(t, layers[0].Uncompressed)
	diffID, _ := layers[0].DiffID()
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs = []v1.Hash{diffID, diffID}
	rawCfg, _ := json.Marshal(cf)
	cfgName := oci.SHA256(rawCfg).Hex + ".json"

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(hdr *tar.Header, data []byte) {
		hdr.Size = int64(len(data))
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
			hdr.Mode = 0o644
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	add(&tar.Header{Name: "./" + cfgName}, rawCfg)
	add(&tar.Header{Name: "./aaa/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(&tar.Header{Name: "./aaa/layer.tar"}, layerTar)
	add(&tar.Header{Name: "./bbb/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(&tar.Header{Name: "./bbb/layer.tar", Typeflag: tar.TypeSymlink, Linkname: "../aaa/layer.tar"}, nil)
	mj, _ := json.Marshal([]dockerManifestEntry{{Config: cfgName, RepoTags: []string{"busybox:latest"}, Layers: []string{"aaa/layer.tar", "bbb/layer.tar"}}})
	add(&tar.Header{Name: "./manifest.json"}, mj)
	tw.Close()

	items, err := Read(writeFile(t, buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].Ref != "busybox:latest" {
		t.Fatalf("items %+v", items)
	}
	got := itemImage(t, items[0])
	checkLayers(t, got)
	m, _ := got.Manifest()
	if len(m.Layers) != 2 || m.Layers[0].Digest != diffID || m.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar" {
		t.Fatalf("manifest layers %+v", m.Layers)
	}
	gotCfg, _ := got.RawConfigFile()
	if !bytes.Equal(gotCfg, rawCfg) {
		t.Fatal("config bytes changed")
	}
	s := newStore(t)
	d, err := s.WriteImage(context.Background(), got)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := s.Image(d.Digest)
	checkLayers(t, stored)
	sl, _ := stored.Layers()
	if !bytes.Equal(testutil.ReadAll(t, sl[1].Uncompressed), layerTar) {
		t.Fatal("stored layer content differs")
	}
}

// checkLayers verifies an image whose layers need not be gzip (which
// validate.Image assumes): manifest and config consistent, every layer's
// bytes hashing to its digest and decompressing to its diff ID.
func checkLayers(t *testing.T, img v1.Image) {
	t.Helper()
	if err := validate.Image(img, validate.Fast); err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	ls, _ := img.Layers()
	if len(ls) != len(cf.RootFS.DiffIDs) {
		t.Fatalf("%d layers, %d diff IDs", len(ls), len(cf.RootFS.DiffIDs))
	}
	for i, l := range ls {
		if got := oci.SHA256(testutil.ReadAll(t, l.Compressed)); got != testutil.Digest(t, l) {
			t.Fatalf("layer %d: content %s, digest %s", i, got, testutil.Digest(t, l))
		}
		if got := oci.SHA256(testutil.ReadAll(t, l.Uncompressed)); got != cf.RootFS.DiffIDs[i] {
			t.Fatalf("layer %d: uncompressed %s, diff ID %s", i, got, cf.RootFS.DiffIDs[i])
		}
	}
}

// randomOCIImage is a random image with OCI media types throughout (old
// skopeo versions select only those from an OCI layout by ref).
func randomOCIImage(t *testing.T, layers int) v1.Image {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for range layers {
		l, err := random.Layer(300, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "arm64"
	img, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestReadArchiveErrors(t *testing.T) {
	if _, err := Read(filepath.Join(t.TempDir(), "missing.tar")); err == nil || !strings.Contains(err.Error(), "missing.tar") {
		t.Fatalf("missing file: %v", err)
	}
	p := writeFile(t, []byte("this is not a tar file at all, not even close................"))
	if _, err := Read(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("garbage file: %v", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "manifest.json", Size: 2, Mode: 0o644, Typeflag: tar.TypeReg})
	tw.Write([]byte("[{"))
	tw.Close()
	p = writeFile(t, buf.Bytes())
	if _, err := Read(p); err == nil || !strings.Contains(err.Error(), "manifest.json") {
		t.Fatalf("bad manifest.json: %v", err)
	}
	// A manifest.json pointing outside the archive directory stays inside.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(`[{"Config":"../../../../etc/passwd","Layers":[]}]`), 0o644)
	if _, err := Read(dir); err == nil {
		t.Fatal("config path escaping the directory was read")
	}
}

// memSource is an oci.BlobSource in memory.
type memSource map[v1.Hash][]byte

func (m memSource) OpenBlob(h v1.Hash) (io.ReadCloser, error) {
	b, ok := m[h]
	if !ok {
		return nil, os.ErrNotExist
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// imageWithLayers builds an OCI image from layer blobs with the given media
// types.
func imageWithLayers(t *testing.T, mts ...types.MediaType) (v1.Image, [][]byte) {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	var tars [][]byte
	for _, mt := range mts {
		rl, err := random.Layer(500, types.OCIUncompressedLayer)
		if err != nil {
			t.Fatal(err)
		}
		plain := testutil.ReadAll(t, rl.Uncompressed)
		tars = append(tars, plain)
		var blob bytes.Buffer
		switch c, _ := archive.CompressionOf(mt); c {
		case archive.Gzip:
			w := gzip.NewWriter(&blob)
			w.Write(plain)
			w.Close()
		case archive.Zstd:
			w, _ := zstd.NewWriter(&blob)
			w.Write(plain)
			w.Close()
		default:
			blob.Write(plain)
		}
		data := blob.Bytes()
		src := memSource{oci.SHA256(data): data}
		l := oci.NewBlobLayer(src, v1.Descriptor{MediaType: mt, Digest: oci.SHA256(data), Size: int64(len(data))}, oci.SHA256(plain))
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	return img, tars
}

func TestDockerArchiveCompressions(t *testing.T) {
	img, tars := imageWithLayers(t, types.OCILayerZStd, types.OCIUncompressedLayer, types.OCILayer)
	var buf bytes.Buffer
	if err := WriteDockerArchive(&buf, []Item{{Ref: "localhost/mixed:1", Artifact: img}}); err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, buf.Bytes())
	exts := map[string]bool{}
	for _, n := range names {
		for _, e := range []string{".tar.zst", ".tar.gz", ".json"} {
			if strings.HasSuffix(n, e) {
				exts[e] = true
			}
		}
		if strings.HasSuffix(n, ".tar") {
			exts[".tar"] = true
		}
	}
	if len(exts) != 4 {
		t.Fatalf("archive names %v", names)
	}
	items, err := Read(writeFile(t, buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	got := itemImage(t, items[0])
	checkLayers(t, got)
	m, _ := got.Manifest()
	wantMT := []types.MediaType{types.OCILayerZStd, types.OCIUncompressedLayer, types.OCILayer}
	ls, _ := got.Layers()
	for i, l := range m.Layers {
		if l.MediaType != wantMT[i] {
			t.Fatalf("layer %d media type %s, want %s", i, l.MediaType, wantMT[i])
		}
		if !bytes.Equal(testutil.ReadAll(t, ls[i].Uncompressed), tars[i]) {
			t.Fatalf("layer %d content differs", i)
		}
	}
	// Layers keep their compressed bytes, so the manifest is the original.
	wantRaw, _ := img.RawManifest()
	gotRaw, _ := got.RawManifest()
	var wm, gm v1.Manifest
	json.Unmarshal(wantRaw, &wm)
	json.Unmarshal(gotRaw, &gm)
	for i := range wm.Layers {
		if wm.Layers[i].Digest != gm.Layers[i].Digest {
			t.Fatalf("layer %d digest %s, want %s", i, gm.Layers[i].Digest, wm.Layers[i].Digest)
		}
	}
	s := newStore(t)
	d, err := s.WriteImage(context.Background(), got)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := s.Image(d.Digest)
	checkLayers(t, stored)
}

func TestNestedIndex(t *testing.T) {
	inner, _ := random.Index(64, 1, 2)
	img := randomOCIImage(t, 1)
	outer := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: inner},
		mutate.IndexAddendum{Add: img})
	s := newStore(t)
	ctx := context.Background()
	d, err := s.WriteIndex(ctx, outer)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("localhost/nested:1", d); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.GCWithGrace(ctx, 0); err != nil {
		t.Fatal(err)
	}
	got, err := s.Index(d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(got); err != nil {
		t.Fatalf("nested index incomplete after GC: %v", err)
	}
	child, err := got.ImageIndex(testutil.Digest(t, inner))
	if err != nil {
		t.Fatal(err)
	}
	if testutil.Digest(t, child) != testutil.Digest(t, inner) {
		t.Fatal("child index digest differs")
	}
	if _, err := got.ImageIndex(testutil.Digest(t, img)); err == nil {
		t.Fatal("ImageIndex of an image child succeeded")
	}
	var buf bytes.Buffer
	if err := WriteOCIArchive(&buf, []Item{{Ref: "localhost/nested:1", Artifact: got}}); err != nil {
		t.Fatal(err)
	}
	items, err := Read(writeFile(t, buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(itemIndex(t, items[0])); err != nil {
		t.Fatal(err)
	}
	if testutil.Digest(t, itemIndex(t, items[0])) != d.Digest {
		t.Fatal("archive index digest differs")
	}
}

func newStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}
