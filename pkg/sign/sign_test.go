package sign

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
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
	c := registry.New(registry.Options{})
	if _, err := c.Write(ctx, img, []name.Reference{ref}); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	priv, pub := keyPair(t)
	other, _ := keyPair(t)
	pk, _ := ParsePublicKey(pub)
	if _, err := Verify(ctx, ref.Context(), d, []crypto.PublicKey{pk}, nil, c); err == nil || !strings.Contains(err.Error(), "no signatures") {
		t.Errorf("unsigned: %v", err)
	}
	for _, k := range []crypto.Signer{other, priv} {
		if _, err := Sign(ctx, ref.Context(), v1.Descriptor{Digest: d}, k, nil, Legacy, c); err != nil {
			t.Fatal(err)
		}
	}
	vs, err := Verify(ctx, ref.Context(), d, []crypto.PublicKey{pk}, IdentityMatcher(ref, &policy.SignedIdentity{Type: "matchRepository"}), c)
	if err != nil || len(vs) != 1 {
		t.Fatalf("verify: %d, %v", len(vs), err)
	}
	var p Payload
	if err := json.Unmarshal(vs[0].Payload, &p); err != nil || p.Critical.Image.DockerManifestDigest != d.String() {
		t.Errorf("payload %s: %v", vs[0].Payload, err)
	}
	// The signature image holds both signatures (appended, as cosign does).
	sd, err := c.Fetch(ctx, SignatureTag(ref.Context(), d))
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
	if _, err := Verify(ctx, ref.Context(), other2, []crypto.PublicKey{pk}, nil, c); err == nil {
		t.Error("verified a digest that was never signed")
	}
	elsewhere, _ := name.ParseReference(addr + "/team/other:1")
	if _, err := Verify(ctx, ref.Context(), d, []crypto.PublicKey{pk}, IdentityMatcher(elsewhere, &policy.SignedIdentity{Type: "matchRepository"}), c); err == nil || !strings.Contains(err.Error(), "signed for") {
		t.Errorf("another repository's identity: %v", err)
	}
	if _, err := Verify(ctx, ref.Context(), d, []crypto.PublicKey{pk}, IdentityMatcher(ref, nil), c); err == nil || !strings.Contains(err.Error(), "matchRepository") {
		t.Errorf("matchRepoDigestOrExact with a tag: %v", err)
	}
	if _, err := Verify(ctx, ref.Context(), d, []crypto.PublicKey{pk}, IdentityMatcher(ref.Context().Digest(d.String()), nil), c); err != nil {
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

// TestSignReferrers: oci-1-1 signatures are referrers of the image, found
// through the referrers API where the registry has it and through the
// sha256-<hex> referrers tag where it has not; Verify finds them there and
// beside a legacy .sig signature.
func TestSignReferrers(t *testing.T) {
	t.Parallel()
	for _, api := range []bool{true, false} {
		t.Run(map[bool]string{true: "api", false: "tag"}[api], func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			addr := testutil.StartInProcessRegistry(t)
			if api {
				addr = testutil.StartReferrersRegistry(t)
			}
			img, err := random.Image(100, 1)
			if err != nil {
				t.Fatal(err)
			}
			ref, _ := name.ParseReference(addr + "/team/app:1")
			c := registry.New(registry.Options{})
			desc, err := c.Write(ctx, img, []name.Reference{ref})
			if err != nil {
				t.Fatal(err)
			}
			priv, pub := keyPair(t)
			pk, _ := ParsePublicKey(pub)
			where, err := Sign(ctx, ref.Context(), desc, priv, nil, Referrers, c)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := where.(name.Digest); !ok {
				t.Fatalf("a referrer is pushed by digest, not to %s", where)
			}
			refs, err := c.Referrers(ctx, ref.Context(), desc.Digest, string(SignatureArtifactType))
			if err != nil || len(refs) != 1 || refs[0].Digest.String() != where.Identifier() {
				t.Fatalf("referrers: %v, %v (want %s)", refs, err, where)
			}
			// Without the API the referrers tag is an OCI index naming it.
			tagged, err := c.Fetch(ctx, registry.ReferrersTag(ref.Context(), desc.Digest))
			if api {
				if err == nil {
					t.Errorf("the referrers tag was written although the registry has the API")
				}
			} else if err != nil || tagged.MediaType != "application/vnd.oci.image.index.v1+json" {
				t.Errorf("referrers tag: %v", err)
			}
			sd, err := c.Fetch(ctx, where)
			if err != nil {
				t.Fatal(err)
			}
			var m v1.Manifest
			if err := json.Unmarshal(sd.Manifest, &m); err != nil {
				t.Fatal(err)
			}
			if m.Subject == nil || m.Subject.Digest != desc.Digest || m.Subject.Size != desc.Size || m.Config.MediaType != SignatureArtifactType || len(m.Layers) != 1 {
				t.Errorf("cosign's OCI 1.1 signature manifest shape: %s", sd.Manifest)
			}
			vs, err := Verify(ctx, ref.Context(), desc.Digest, []crypto.PublicKey{pk}, nil, c)
			if err != nil || len(vs) != 1 {
				t.Fatalf("verify a referrer: %d, %v", len(vs), err)
			}
			// A second, legacy signature: both found.
			if _, err := Sign(ctx, ref.Context(), desc, priv, nil, Legacy, c); err != nil {
				t.Fatal(err)
			}
			if vs, err := Verify(ctx, ref.Context(), desc.Digest, []crypto.PublicKey{pk}, nil, c); err != nil || len(vs) != 2 {
				t.Errorf("verify both forms: %d, %v", len(vs), err)
			}
			_, otherPub := keyPair(t)
			opk, _ := ParsePublicKey(otherPub)
			if _, err := Verify(ctx, ref.Context(), desc.Digest, []crypto.PublicKey{opk}, nil, c); err == nil || !strings.Contains(err.Error(), "referrer sha256:") {
				t.Errorf("another key: %v", err)
			}
		})
	}
}
