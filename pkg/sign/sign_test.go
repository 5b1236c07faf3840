package sign

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/kiln-build/kiln/internal/testutil"
	"github.com/kiln-build/kiln/pkg/policy"
	"github.com/kiln-build/kiln/pkg/registry"
)

func TestKeyRoundTrip(t *testing.T) {
	t.Parallel()
	priv, pub, err := GenerateKeyPair([]byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(priv), "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----") {
		t.Errorf("private key PEM:\n%s", priv)
	}
	k, err := ParsePrivateKey(priv, []byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(p) {
		t.Error("the public key is not the private key's")
	}
	if _, err := ParsePrivateKey(priv, []byte("wrong")); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("wrong password: %v", err)
	}
	old := strings.ReplaceAll(string(priv), SigstorePrivateKeyType, CosignPrivateKeyType)
	if _, err := ParsePrivateKey([]byte(old), []byte("s3cret")); err != nil {
		t.Errorf("the older COSIGN PEM type: %v", err)
	}
	if _, err := ParsePrivateKey(pub, nil); err == nil {
		t.Error("a public key parsed as a private key")
	}
}

func TestPayloadBytes(t *testing.T) {
	t.Parallel()
	d := mustHash(t, "sha256:"+strings.Repeat("ab", 32))
	got, err := NewPayload("127.0.0.1:5000/team/app", d, nil)
	if err != nil {
		t.Fatal(err)
	}
	// cosign's simple-signing payload, byte for byte.
	want := `{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/team/app"},"image":{"docker-manifest-digest":"sha256:` + strings.Repeat("ab", 32) + `"},"type":"cosign container image signature"},"optional":null}`
	if string(got) != want {
		t.Errorf("payload\n got %s\nwant %s", got, want)
	}
}

func TestSignVerify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	addr := testutil.StartInProcessRegistry(t)
	img, err := random.Image(100, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(addr + "/team/app:1")
	o := registry.Options{}
	if _, err := registry.Write(ctx, registry.Artifact{Image: img}, []name.Reference{ref}, o); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	priv, pub := keyPair(t)
	other, _ := keyPair(t)
	pk, _ := ParsePublicKey(pub)
	if _, err := Verify(ctx, ref.Context(), d, []crypto.PublicKey{pk}, nil, o); err == nil || !strings.Contains(err.Error(), "no signatures") {
		t.Errorf("unsigned: %v", err)
	}
	for _, k := range []crypto.Signer{other, priv} {
		if _, err := Sign(ctx, ref.Context(), d, k, nil, o); err != nil {
			t.Fatal(err)
		}
	}
	vs, err := Verify(ctx, ref.Context(), d, []crypto.PublicKey{pk}, IdentityMatcher(ref, &policy.SignedIdentity{Type: "matchRepository"}), o)
	if err != nil || len(vs) != 1 {
		t.Fatalf("verify: %d, %v", len(vs), err)
	}
	var p Payload
	if err := json.Unmarshal(vs[0].Payload, &p); err != nil || p.Critical.Image.DockerManifestDigest != d.String() {
		t.Errorf("payload %s: %v", vs[0].Payload, err)
	}
	// The signature image holds both signatures (appended, as cosign does).
	sd, err := registry.Fetch(ctx, SignatureTag(ref.Context(), d), o)
	if err != nil {
		t.Fatal(err)
	}
	sigImg, _ := sd.Image()
	m, _ := sigImg.Manifest()
	if len(m.Layers) != 2 || m.Config.MediaType != "application/vnd.oci.image.config.v1+json" || m.MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("signature manifest: %d layers, %s, %s", len(m.Layers), m.MediaType, m.Config.MediaType)
	}
	// Another digest, another repository's identity, the default identity
	// rule with a tag: refused, each saying why.
	other2 := mustHash(t, "sha256:"+strings.Repeat("cd", 32))
	if _, err := Verify(ctx, ref.Context(), other2, []crypto.PublicKey{pk}, nil, o); err == nil {
		t.Error("verified a digest that was never signed")
	}
	elsewhere, _ := name.ParseReference(addr + "/team/other:1")
	if _, err := Verify(ctx, ref.Context(), d, []crypto.PublicKey{pk}, IdentityMatcher(elsewhere, &policy.SignedIdentity{Type: "matchRepository"}), o); err == nil || !strings.Contains(err.Error(), "signed for") {
		t.Errorf("another repository's identity: %v", err)
	}
	if _, err := Verify(ctx, ref.Context(), d, []crypto.PublicKey{pk}, IdentityMatcher(ref, nil), o); err == nil || !strings.Contains(err.Error(), "matchRepository") {
		t.Errorf("matchRepoDigestOrExact with a tag: %v", err)
	}
	if _, err := Verify(ctx, ref.Context(), d, []crypto.PublicKey{pk}, IdentityMatcher(ref.Context().Digest(d.String()), nil), o); err != nil {
		t.Errorf("matchRepoDigestOrExact with a digest: %v", err)
	}
}

func keyPair(t *testing.T) (crypto.Signer, []byte) {
	t.Helper()
	priv, pub, err := GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParsePrivateKey(priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k, pub
}
