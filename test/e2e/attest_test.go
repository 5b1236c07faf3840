package e2e

import (
	"archive/tar"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/attest"
)

// TestAttestations builds on the Debian test base with a package
// installed by RUN (dpkg -i), pushes with --sbom and
// --provenance=mode=max, and reads the pushed index as buildx's readers
// do: the SBOM's dpkg set is what dpkg-query says inside the image, the
// provenance names the base, and neither a --secret nor an ARG TOKEN's
// value appears in anything pushed. copy carries the attestations along.
func TestAttestations(t *testing.T) {
	testutil.SkipIfShort(t)
	t.Parallel()
	reg := testutil.StartRegistry(t)
	testutil.PushImage(t, reg+"/library/debian:12", testutil.DebianImage(t))
	dir := t.TempDir()
	pkg := filepath.Join(t.TempDir(), "pkg")
	testutil.Require(t, os.MkdirAll(filepath.Join(pkg, "DEBIAN"), 0o755))
	testutil.Require(t, os.MkdirAll(filepath.Join(pkg, "usr/share/kiln-test"), 0o755))
	testutil.Require(t, os.WriteFile(filepath.Join(pkg, "DEBIAN/control"), []byte("Package: kiln-test-pkg\nVersion: 1:1.2-3\nArchitecture: all\nMaintainer: kiln <kiln@example.com>\nDescription: a test package\n"), 0o644))
	testutil.Require(t, os.WriteFile(filepath.Join(pkg, "usr/share/kiln-test/hello"), []byte("hello\n"), 0o644))
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "--build", pkg, filepath.Join(dir, "kiln-test.deb")).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, out)
	}
	const token, secret = "tok-3f9a1c77e2d4-never-pushed", "sec-8b21d0c4aa6e-never-pushed"
	testutil.Require(t, os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(`FROM `+reg+`/library/debian:12
ARG TOKEN
COPY kiln-test.deb /tmp/
RUN dpkg -i /tmp/kiln-test.deb && rm /tmp/kiln-test.deb
RUN --mount=type=secret,id=s test -s /run/secrets/s && dpkg-query -W -f '${Package} ${Version}\n' > /dpkg.txt
`), 0o644))
	u := newKilnUser(t)
	u.setenv("MY_SECRET", secret)
	ref := reg + "/team/app:1"
	u.ok(t, "build", "--push", "-t", ref, "--sbom=true", "--provenance=mode=max", "--secret", "id=s,env=MY_SECRET",
		"--build-arg", "TOKEN="+token, "--build-arg", "PLAIN=visible-value", dir)

	r, err := name.ParseReference(ref)
	testutil.Require(t, err)
	idx, err := remote.Index(r)
	testutil.Require(t, err)
	im, err := idx.IndexManifest()
	testutil.Require(t, err)
	if len(im.Manifests) != 2 {
		t.Fatalf("index has %d manifests, want the image and its attestation manifest", len(im.Manifests))
	}
	imgDesc, attDesc := im.Manifests[0], im.Manifests[1]
	if attDesc.Annotations[attest.RefTypeAnnotation] != "attestation-manifest" || attDesc.Annotations[attest.RefDigestAnnotation] != imgDesc.Digest.String() ||
		attDesc.Platform == nil || attDesc.Platform.OS != "unknown" {
		t.Errorf("attestation descriptor %+v for image %s", attDesc, imgDesc.Digest)
	}
	img, err := idx.Image(imgDesc.Digest)
	testutil.Require(t, err)
	att, err := idx.Image(attDesc.Digest)
	testutil.Require(t, err)
	statements := map[string]attest.Statement{}
	raw := map[string][]byte{}
	am, err := att.Manifest()
	testutil.Require(t, err)
	for _, l := range am.Layers {
		if l.MediaType != attest.InTotoMediaType {
			t.Errorf("attestation layer media type %s", l.MediaType)
		}
		layer, err := att.LayerByDigest(l.Digest)
		testutil.Require(t, err)
		rc, err := layer.Compressed()
		testutil.Require(t, err)
		b, err := io.ReadAll(rc)
		testutil.Require(t, err)
		var s attest.Statement
		testutil.Require(t, json.Unmarshal(b, &s))
		if s.Type != attest.StatementType || len(s.Subject) != 1 || s.Subject[0].Digest["sha256"] != imgDesc.Digest.Hex || l.Annotations[attest.PredicateTypeAnnot] != s.PredicateType {
			t.Errorf("statement header %s %s %+v", s.Type, s.PredicateType, s.Subject)
		}
		statements[s.PredicateType], raw[s.PredicateType] = s, b
	}
	// The SBOM's dpkg packages are dpkg-query's, the installed one included.
	var doc attest.Document
	b, _ := json.Marshal(statements[attest.SPDXPredicateType].Predicate)
	testutil.Require(t, json.Unmarshal(b, &doc))
	var got []string
	for _, p := range doc.Packages {
		if strings.HasPrefix(p.SPDXID, "SPDXRef-Package-deb-") {
			got = append(got, p.Name+" "+p.VersionInfo)
		}
	}
	sort.Strings(got)
	want := strings.Split(strings.TrimSpace(imageFile(t, img, "dpkg.txt")), "\n")
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") || !strings.Contains(strings.Join(got, "\n"), "kiln-test-pkg 1:1.2-3") {
		t.Errorf("SBOM dpkg set differs from dpkg-query in the image:\n got %v\nwant %v", got, want)
	}
	if doc.SPDXVersion != "SPDX-2.3" || !strings.Contains(string(raw[attest.SPDXPredicateType]), `"relationshipType":"DESCENDANT_OF"`) {
		t.Errorf("SBOM header %s, or no base image", doc.SPDXVersion)
	}
	// Provenance: SLSA v0.2, the base as a material, PLAIN but not TOKEN.
	prov := string(raw[attest.SLSAProvenancePredicate])
	if err := testutil.CheckSLSAProvenance(raw[attest.SLSAProvenancePredicate]); err != nil {
		t.Errorf("mode=max provenance against in-toto v0.1 and SLSA v0.2: %v\n%s", err, prov)
	}
	for _, w := range []string{`"buildType":"https://mobyproject.org/buildkit@v1"`, reg + "/library/debian", `"build-arg:PLAIN":"visible-value"`, `"language":"Dockerfile"`} {
		if !strings.Contains(prov, w) {
			t.Errorf("provenance lacks %s:\n%s", w, prov)
		}
	}
	if strings.Contains(prov, "build-arg:TOKEN") {
		t.Errorf("provenance names the TOKEN build arg:\n%s", prov)
	}
	// No blob of the repository holds the token or the secret.
	for _, s := range []string{token, secret} {
		for _, b := range raw {
			if strings.Contains(string(b), s) {
				t.Errorf("an attestation holds %q", s)
			}
		}
		if strings.Contains(imageFiles(t, img), s) {
			t.Errorf("the image holds %q", s)
		}
	}
	u.noSecrets(t, token, secret)

	// copy pushes the attestations with the image.
	u.ok(t, "copy", ref, reg+"/team/copied:1")
	cr, _ := name.ParseReference(reg + "/team/copied:1")
	cidx, err := remote.Index(cr)
	testutil.Require(t, err)
	cim, err := cidx.IndexManifest()
	testutil.Require(t, err)
	if len(cim.Manifests) != 2 || cim.Manifests[1].Annotations[attest.RefTypeAnnotation] != "attestation-manifest" {
		t.Errorf("the copy lost the attestation manifest: %+v", cim.Manifests)
	}
	if _, err := remote.Image(cr.Context().Digest(attDesc.Digest.String())); err != nil {
		t.Errorf("the copy's attestation manifest: %v", err)
	}

	// --provenance=true is mode=min: no build args, no Dockerfile.
	u.ok(t, "build", "--push", "-t", reg+"/team/min:1", "--provenance=true", "--build-arg", "PLAIN=visible-value", policyContext(t, "FROM "+reg+"/library/debian:12\nCOPY a.txt /\n"))
	mr, _ := name.ParseReference(reg + "/team/min:1")
	midx, err := remote.Index(mr)
	testutil.Require(t, err)
	mim, _ := midx.IndexManifest()
	if len(mim.Manifests) != 2 {
		t.Fatalf("min provenance: %d manifests", len(mim.Manifests))
	}
	matt, _ := midx.Image(mim.Manifests[1].Digest)
	mls, _ := matt.Layers()
	if len(mls) != 1 {
		t.Fatalf("min provenance: %d statements", len(mls))
	}
	rc, _ := mls[0].Compressed()
	mb, _ := io.ReadAll(rc)
	if err := testutil.CheckSLSAProvenance(mb); err != nil {
		t.Errorf("mode=min provenance against in-toto v0.1 and SLSA v0.2: %v\n%s", err, mb)
	}
	if strings.Contains(string(mb), "visible-value") || strings.Contains(string(mb), `"language":"Dockerfile"`) || !strings.Contains(string(mb), "library/debian") {
		t.Errorf("mode=min provenance:\n%s", mb)
	}
}

// imageFile reads one file of img's flattened filesystem.
func imageFile(t *testing.T, img v1.Image, path string) string {
	t.Helper()
	files := imageFileMap(t, img)
	s, ok := files[path]
	if !ok {
		t.Fatalf("the image has no /%s", path)
	}
	return s
}

func imageFiles(t *testing.T, img v1.Image) string {
	t.Helper()
	var b strings.Builder
	for _, s := range imageFileMap(t, img) {
		b.WriteString(s)
	}
	return b.String()
}

func imageFileMap(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	return tarFileMap(t, rc)
}

// tarFileMap reads a tar stream's regular files (path without leading /).
func tarFileMap(t *testing.T, r io.Reader) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		testutil.Require(t, err)
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		testutil.Require(t, err)
		out[strings.TrimPrefix(filepath.Clean("/"+h.Name), "/")] = string(b)
	}
}

// TestAttestationsMultiPlatform: each image of a multi-platform build is
// followed by its own attestation manifest, whose statements name it.
func TestAttestationsMultiPlatform(t *testing.T) {
	testutil.SkipIfShort(t)
	t.Parallel()
	reg := testutil.StartRegistry(t)
	testutil.PushIndex(t, reg+"/library/multi:1", testutil.PlatformIndex(t))
	u := newKilnUser(t)
	ref := reg + "/team/multi:1"
	u.ok(t, "build", "--push", "-t", ref, "--platform", "linux/amd64,linux/arm64", "--sbom", "--attest", "type=provenance,mode=max",
		policyContext(t, "FROM "+reg+"/library/multi:1\nCOPY a.txt /\n"))
	r, err := name.ParseReference(ref)
	testutil.Require(t, err)
	idx, err := remote.Index(r)
	testutil.Require(t, err)
	im, err := idx.IndexManifest()
	testutil.Require(t, err)
	if len(im.Manifests) != 4 {
		t.Fatalf("index has %d manifests, want 2 images and 2 attestation manifests", len(im.Manifests))
	}
	for i := 0; i < 4; i += 2 {
		img, att := im.Manifests[i], im.Manifests[i+1]
		if img.Platform == nil || img.Platform.OS != "linux" || att.Annotations[attest.RefDigestAnnotation] != img.Digest.String() {
			t.Errorf("manifest %d: %+v, attestation %+v", i, img, att)
			continue
		}
		a, err := idx.Image(att.Digest)
		testutil.Require(t, err)
		ls, err := a.Layers()
		testutil.Require(t, err)
		if len(ls) != 2 {
			t.Errorf("attestation of %s has %d statements, want an SBOM and a provenance", img.Platform.Architecture, len(ls))
		}
		for _, l := range ls {
			rc, err := l.Compressed()
			testutil.Require(t, err)
			var s attest.Statement
			testutil.Require(t, json.NewDecoder(rc).Decode(&s))
			if s.Subject[0].Digest["sha256"] != img.Digest.Hex || !strings.Contains(s.Subject[0].Name, "platform=linux%2F"+img.Platform.Architecture) {
				t.Errorf("statement %s is about %+v, not %s", s.PredicateType, s.Subject, img.Digest)
			}
		}
	}
}
