package build

import (
	"bytes"
	"io"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/kiln-build/kiln/pkg/attest"
	"github.com/kiln-build/kiln/pkg/oci"
)

// TestAttest: a build's result gets one attestation manifest per image,
// annotated with the image's digest, holding the SBOM and provenance
// asked for, with the build's target and arguments and never a secret's
// value; nothing asked, nothing changes.
func TestAttest(t *testing.T) {
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	t.Setenv("KILN_TEST_ATTEST_SECRET", "s3cr3t-value")
	ts := time.Unix(1700000000, 0).UTC()
	o := Options{Target: "final", BuildArgs: map[string]string{"VERSION": "1.2", "GREETING": "s3cr3t-value"}, Timestamp: &ts,
		Secrets: map[string]Secret{"tok": {Env: "KILN_TEST_ATTEST_SECRET"}}, Dockerfile: []byte("FROM scratch\n")}

	res := &Result{Artifact: img, Digest: d}
	if err := Attest(res, o, AttestOptions{Version: "test"}); err != nil || res.Artifact != oci.Artifact(img) {
		t.Fatalf("nothing asked: %v, artifact changed: %v", err, res.Artifact != oci.Artifact(img))
	}
	a := AttestOptions{Request: attest.Request{SBOM: true, Provenance: true, ProvenanceMax: true}, Name: "example.com/app:1", Version: "test", DockerfileName: "Dockerfile"}
	if err := Attest(res, o, a); err != nil {
		t.Fatal(err)
	}
	idx, ok := oci.AsIndex(res.Artifact)
	if !ok {
		t.Fatalf("result is not an index")
	}
	if got, _ := idx.Digest(); got != res.Digest {
		t.Errorf("Digest %s, index %s", res.Digest, got)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 2 || im.Manifests[0].Digest != d {
		t.Fatalf("index: %+v, %v", im, err)
	}
	if got := im.Manifests[1].Annotations[attest.RefDigestAnnotation]; got != d.String() {
		t.Errorf("attestation manifest annotated %q, want %s", got, d)
	}
	att, err := idx.Image(im.Manifests[1].Digest)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := att.Layers()
	if err != nil || len(layers) != 2 {
		t.Fatalf("attestation layers: %d, %v; want 2 (SBOM, provenance)", len(layers), err)
	}
	var all []byte
	for _, l := range layers {
		all = append(all, readLayer(t, l)...)
	}
	for _, want := range []string{attest.SPDXPredicateType, attest.SLSAProvenancePredicate, `"final"`, "VERSION", "example.com/app:1", ts.Format(time.RFC3339)} {
		if !bytes.Contains(all, []byte(want)) {
			t.Errorf("attestations lack %s", want)
		}
	}
	if bytes.Contains(all, []byte("s3cr3t-value")) {
		t.Error("a secret's value is in the attestations")
	}
}

func readLayer(t *testing.T, l v1.Layer) []byte {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
