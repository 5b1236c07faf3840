package attest

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/kiln-build/kiln/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// layer makes a layer of files (path -> content; mode 0755 when the
// path ends in "*").
func layer(t *testing.T, files map[string][]byte) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		mode := int64(0o644)
		p := n
		if strings.HasSuffix(n, "*") {
			mode, p = 0o755, strings.TrimSuffix(n, "*")
		}
		testutil.Require(t, tw.WriteHeader(&tar.Header{Name: p, Mode: mode, Size: int64(len(files[n])), Typeflag: tar.TypeReg}))
		_, err := tw.Write(files[n])
		testutil.Require(t, err)
	}
	testutil.Require(t, tw.Close())
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	testutil.Require(t, err)
	return l
}

func jarWith(t *testing.T, props string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create("META-INF/maven/org.example/lib/pom.properties")
	testutil.Require(t, err)
	_, _ = w.Write([]byte(props))
	testutil.Require(t, zw.Close())
	return buf.Bytes()
}

func purls(doc *Document) map[string]bool {
	out := map[string]bool{}
	for _, p := range doc.Packages {
		for _, r := range p.ExternalRefs {
			out[r.Locator] = true
		}
	}
	return out
}

// TestSBOMEcosystems finds each kind of package in a synthetic image and
// writes a document with the fields SPDX 2.3 requires.
func TestSBOMEcosystems(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	testutil.Require(t, err)
	goBin, err := os.ReadFile(self)
	testutil.Require(t, err)
	img, err := mutate.AppendLayers(empty.Image, layer(t, map[string][]byte{
		"etc/os-release":                             []byte("ID=debian\nVERSION_ID=\"12\"\n"),
		"var/lib/dpkg/status":                        []byte("Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9+deb12u4\nDescription: GNU C\n multi-line\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:5.2.15-2\n"),
		"var/lib/dpkg/info/libc6:amd64.list":         []byte("/.\n/lib\n/lib/libc.so.6\n"),
		"lib/libc.so.6":                              []byte("libc"),
		"lib/apk/db/installed":                       []byte("P:musl\nV:1.2.4-r2\nA:x86_64\nF:lib\nR:ld-musl-x86_64.so.1\n\n"),
		"app/lib/lib-1.0.jar":                        jarWith(t, "#generated\ngroupId=org.example\nartifactId=lib\nversion=1.0\n"),
		"app/node_modules/left-pad/package.json":     []byte(`{"name":"left-pad","version":"1.3.0"}`),
		"app/node_modules/@scope/pkg/package.json":   []byte(`{"name":"@scope/pkg","version":"2.0.0"}`),
		"app/node_modules/left-pad/lib/package.json": []byte(`{"name":"not-a-package","version":"0"}`),
		"usr/lib/python3/dist-packages/Requests_Lib-2.31.0.dist-info/METADATA": []byte("Metadata-Version: 2.1\nName: Requests_Lib\nVersion: 2.31.0\n\nName: ignored\n"),
		"usr/local/bin/app*": goBin,
	}))
	testutil.Require(t, err)
	base := &Base{Ref: "127.0.0.1:5000/library/debian:12", Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("1", 64)}}
	doc, err := SBOM(img, SBOMOptions{Name: "registry.example.com/team/app:1", Base: base, Created: time.Unix(0, 0), Tool: "kiln-test"})
	testutil.Require(t, err)
	got := purls(doc)
	for _, want := range []string{
		"pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12",
		"pkg:deb/debian/bash@1%3A5.2.15-2?arch=amd64&distro=debian-12",
		"pkg:apk/debian/musl@1.2.4-r2?arch=x86_64&distro=debian-12",
		"pkg:maven/org.example/lib@1.0",
		"pkg:npm/left-pad@1.3.0",
		"pkg:npm/%40scope/pkg@2.0.0",
		"pkg:pypi/requests-lib@2.31.0",
		"pkg:golang/github.com/kiln-build/kiln",
		"pkg:oci/debian@sha256%3A" + strings.Repeat("1", 64) + "?repository_url=127.0.0.1%3A5000%2Flibrary%2Fdebian&tag=12",
	} {
		found := got[want]
		for g := range got {
			found = found || strings.HasPrefix(g, want+"@")
		}
		if !found {
			t.Errorf("no package %s in %v", want, got)
		}
	}
	for g := range got {
		if strings.Contains(g, "gone") || strings.Contains(g, "not-a-package") || strings.Contains(g, "ignored") {
			t.Errorf("package %s should not be listed", g)
		}
	}
	checkSPDX(t, doc)
	// The files dpkg says libc6 owns, with their SHA-1.
	if len(doc.Files) != 1 || doc.Files[0].FileName != "/lib/libc.so.6" || doc.Files[0].Checksums[0].Value != "cb9c5e2d56e129ddbf7d7f021e9ecdcc26174648" {
		t.Errorf("files: %+v", doc.Files)
	}
	hasRel := false
	for _, r := range doc.Relationships {
		hasRel = hasRel || r.Type == "DESCENDANT_OF" && r.Related == "SPDXRef-base-image"
	}
	if !hasRel {
		t.Error("the image is not DESCENDANT_OF its base")
	}
}

// checkSPDX checks what SPDX 2.3's JSON schema requires of a document, and
// that every relationship names an element of it.
func checkSPDX(t *testing.T, doc *Document) {
	t.Helper()
	b, err := json.Marshal(doc)
	testutil.Require(t, err)
	var m map[string]any
	testutil.Require(t, json.Unmarshal(b, &m))
	validateWithSPDXTools(t, b, doc)
	for _, k := range []string{"spdxVersion", "dataLicense", "SPDXID", "name", "documentNamespace", "creationInfo"} {
		if m[k] == nil || m[k] == "" {
			t.Errorf("document lacks %s", k)
		}
	}
	if doc.SPDXVersion != "SPDX-2.3" || doc.DataLicense != "CC0-1.0" || doc.SPDXID != "SPDXRef-DOCUMENT" {
		t.Errorf("header %s %s %s", doc.SPDXVersion, doc.DataLicense, doc.SPDXID)
	}
	if _, err := time.Parse(time.RFC3339, doc.CreationInfo.Created); err != nil || len(doc.CreationInfo.Creators) == 0 {
		t.Errorf("creationInfo %+v", doc.CreationInfo)
	}
	ids := map[string]bool{"SPDXRef-DOCUMENT": true}
	idRe := spdxIDUnsafe
	for _, p := range doc.Packages {
		if p.Name == "" || p.DownloadLocation == "" || ids[p.SPDXID] || idRe.MatchString(strings.TrimPrefix(p.SPDXID, "SPDXRef-")) {
			t.Errorf("package %+v: missing name or downloadLocation, or a bad/duplicate SPDXID", p)
		}
		ids[p.SPDXID] = true
	}
	for _, f := range doc.Files {
		if len(f.Checksums) == 0 || f.Checksums[0].Algorithm != "SHA1" {
			t.Errorf("file %+v has no SHA1", f)
		}
		ids[f.SPDXID] = true
	}
	for _, r := range doc.Relationships {
		if !ids[r.Element] || !ids[r.Related] {
			t.Errorf("relationship %+v names an element the document lacks", r)
		}
	}
}

// TestSBOMDebianMatchesDpkg: the dpkg packages of the Debian test base are
// exactly what dpkg-query says of its database.
func TestSBOMDebianMatchesDpkg(t *testing.T) {
	testutil.SkipIfShort(t)
	t.Parallel()
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		t.Skip("dpkg-query is not installed")
	}
	img := testutil.DebianImage(t)
	doc, err := SBOM(img, SBOMOptions{Created: time.Now(), Tool: "kiln-test"})
	testutil.Require(t, err)
	checkSPDX(t, doc)
	var got []string
	for _, p := range doc.Packages {
		if strings.HasPrefix(p.SPDXID, "SPDXRef-Package-deb-") {
			got = append(got, p.Name+" "+p.VersionInfo)
		}
	}
	sort.Strings(got)
	// dpkg-query over the image's own database.
	dir := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		p := strings.TrimPrefix(filepath.Clean("/"+h.Name), "/")
		if h.Typeflag != tar.TypeReg || !strings.HasPrefix(p, "var/lib/dpkg/") {
			continue
		}
		dst := filepath.Join(dir, p)
		testutil.Require(t, os.MkdirAll(filepath.Dir(dst), 0o755))
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(tr)
		testutil.Require(t, os.WriteFile(dst, buf.Bytes(), 0o644))
	}
	out, err := exec.Command("dpkg-query", "--admindir="+filepath.Join(dir, "var/lib/dpkg"), "-W", "-f", "${Package} ${Version}\n").Output()
	testutil.Require(t, err)
	want := strings.Split(strings.TrimSpace(string(out)), "\n")
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("SBOM dpkg packages differ from dpkg-query:\n got %d: %v\nwant %d: %v", len(got), got, len(want), want)
	}
	if len(doc.Files) < 100 {
		t.Errorf("only %d files owned by packages", len(doc.Files))
	}
}

func TestProvenanceConfigSource(t *testing.T) {
	t.Parallel()
	git := GitMaterial("https://example.com/org/app.git", "refs/tags/v1", "4b220de5058abfd01ff619c9d2ff6b09a049bea0")
	p := Provenance(ProvenanceOptions{DockerfileName: "Dockerfile", ConfigSource: git})
	cs := p["invocation"].(map[string]any)["configSource"].(map[string]any)
	if cs["uri"] != "https://example.com/org/app.git#refs/tags/v1" || cs["digest"].(map[string]string)["sha1"] != "4b220de5058abfd01ff619c9d2ff6b09a049bea0" || cs["entryPoint"] != "Dockerfile" {
		t.Errorf("configSource: %v", cs)
	}
	if mats := p["materials"].([]Material); len(mats) != 1 || mats[0].URI != git.URI {
		t.Errorf("materials: %v", mats)
	}
	local := Provenance(ProvenanceOptions{DockerfileName: "Dockerfile"})
	if cs := local["invocation"].(map[string]any)["configSource"].(map[string]any); len(cs) != 1 {
		t.Errorf("a local context's configSource: %v", cs)
	}
}
