package sign

import (
	"context"
	"crypto"
	"encoding/base64"
	"fmt"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/pkg/policy"
	"github.com/kiln-build/kiln/pkg/registry"
)

// PolicyVerifier is the registry.SignatureVerifier of policy.json's
// sigstoreSigned requirements: each requirement needs a signature of
// digest that one of its keys verifies and whose identity its
// signedIdentity accepts (matchRepoDigestOrExact when it names none).
func PolicyVerifier(ctx context.Context, ref name.Reference, from name.Repository, digest v1.Hash, reqs []policy.Requirement, c *registry.Client) error {
	for _, r := range reqs {
		keys, err := requirementKeys(r)
		if err != nil {
			return err
		}
		if _, err := Verify(ctx, from, digest, keys, IdentityMatcher(ref, r.SignedIdentity), c); err != nil {
			return err
		}
	}
	return nil
}

// requirementKeys reads a sigstoreSigned requirement's public keys.
func requirementKeys(r policy.Requirement) ([]crypto.PublicKey, error) {
	var pems [][]byte
	var names []string
	paths := r.KeyPaths
	if r.KeyPath != "" {
		paths = append(paths, r.KeyPath)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading the public key: %w", err)
		}
		pems, names = append(pems, b), append(names, p)
	}
	datas := r.KeyDatas
	if r.KeyData != "" {
		datas = append(datas, r.KeyData)
	}
	for _, d := range datas {
		b, err := base64.StdEncoding.DecodeString(d)
		if err != nil {
			return nil, fmt.Errorf("keyData is not base64: %v", err)
		}
		pems, names = append(pems, b), append(names, "keyData")
	}
	var keys []crypto.PublicKey
	for i, b := range pems {
		k, err := ParsePublicKey(b)
		if err != nil {
			return nil, fmt.Errorf("public key %s: %w", names[i], err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// IdentityMatcher checks a signature's docker-reference against ref as
// containers' signedIdentity id says (nil: matchRepoDigestOrExact).
func IdentityMatcher(ref name.Reference, id *policy.SignedIdentity) func(string) error {
	typ := "matchRepoDigestOrExact"
	if id != nil {
		typ = id.Type
	}
	return func(signed string) error {
		s, err := name.ParseReference(signed, name.WeakValidation)
		if err != nil {
			return fmt.Errorf("the signed identity %q is not a reference: %v", signed, err)
		}
		// A name without tag parses as :latest; keep whether it had one.
		sTagged := hasTagOrDigest(signed)
		intended := ref
		want := ""
		switch typ {
		case "matchExact":
			if sTagged && s.Name() == ref.Name() {
				return nil
			}
			want = ref.Name()
		case "matchRepoDigestOrExact":
			if _, isDigest := ref.(name.Digest); isDigest {
				if s.Context().Name() == ref.Context().Name() {
					return nil
				}
				want = "repository " + ref.Context().Name()
			} else {
				if sTagged && s.Name() == ref.Name() {
					return nil
				}
				want = ref.Name() + " (signatures naming only the repository need signedIdentity matchRepository)"
			}
		case "matchRepository":
			if s.Context().Name() == intended.Context().Name() {
				return nil
			}
			want = "repository " + intended.Context().Name()
		case "exactReference":
			e, err := name.ParseReference(id.DockerReference, name.WeakValidation)
			if err == nil && sTagged && s.Name() == e.Name() {
				return nil
			}
			want = id.DockerReference
		case "exactRepository":
			e, err := name.NewRepository(id.DockerRepository, name.WeakValidation)
			if err == nil && s.Context().Name() == e.Name() {
				return nil
			}
			want = "repository " + id.DockerRepository
		case "remapIdentity":
			mapped, err := remap(ref, id.Prefix, id.SignedPrefix)
			if err != nil {
				return err
			}
			return IdentityMatcher(mapped, nil)(signed)
		default:
			return fmt.Errorf("unknown signedIdentity %q", typ)
		}
		return fmt.Errorf("it is signed for %s, not %s (signedIdentity %s)", signed, want, typ)
	}
}

// remap replaces prefix of ref's name with signedPrefix (remapIdentity).
func remap(ref name.Reference, prefix, signedPrefix string) (name.Reference, error) {
	n := policy.Identity(ref)
	if n != prefix && !strings.HasPrefix(n, prefix+"/") && !strings.HasPrefix(n, prefix+":") && !strings.HasPrefix(n, prefix+"@") {
		return ref, nil
	}
	return name.ParseReference(signedPrefix+n[len(prefix):], name.WeakValidation)
}

func hasTagOrDigest(s string) bool {
	return strings.Contains(s, "@") || strings.Contains(s[strings.LastIndexByte(s, '/')+1:], ":")
}
