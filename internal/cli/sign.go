package cli

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/policy"
	"github.com/kiln-build/kiln/pkg/registry"
	"github.com/kiln-build/kiln/pkg/sign"
)

// errKeyless is the answer to signing or verifying without a key.
var errKeyless = errors.New("keyless signing and verification (Fulcio certificates, Rekor transparency log) are not supported: kiln cannot reach Fulcio or Rekor; use --key with a cosign key pair (cosign generate-key-pair)")

// loadSignKey opens a cosign private key file with $COSIGN_PASSWORD (an
// empty password when it is not set, as cosign's keys may have).
func loadSignKey(flag, path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	k, err := sign.ParsePrivateKey(data, []byte(os.Getenv("COSIGN_PASSWORD")))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, path, err)
	}
	return k, nil
}

// signDigest signs the manifest desc describes in repo and says where the
// signature went.
func (g *globals) signDigest(cmd *cobra.Command, key crypto.Signer, repo name.Repository, desc v1.Descriptor, mode sign.Mode, rc *registry.Client) error {
	ref, err := sign.Sign(cmd.Context(), repo, desc, key, nil, mode, rc)
	if err != nil {
		return err
	}
	how := ""
	if mode == sign.Referrers {
		how = " (an OCI 1.1 referrer)"
	}
	fmt.Fprintf(g.stderr, "Pushed signature of %s@%s to %s%s\n", displayRepo(repo.Name()), desc.Digest, displayRepo(ref.Name()), how)
	return nil
}

// referrersModeHelp is the help of the referrers-mode flags.
const referrersModeHelp = "where the signature goes: legacy (cosign's sha256-<digest>.sig tag) or oci-1-1 (an OCI 1.1 referrer whose subject is the image: the registry's referrers API, or the sha256-<digest> referrers tag where it has none)"

func newSignCommand(g *globals) *cobra.Command {
	var keyPath, modeFlag string
	cmd := &cobra.Command{
		Use:   "sign --key cosign.key IMAGE...",
		Short: "Sign images in their registry, as cosign sign --key does",
		Long: "Signs the manifest each IMAGE names (a tag is resolved to its digest) with a cosign\n" +
			"private key (password from COSIGN_PASSWORD) and pushes the signature to the\n" +
			"repository's sha256-<digest>.sig tag, where cosign verify and podman's sigstoreSigned\n" +
			"policy find it; with --registry-referrers-mode=oci-1-1, as a referrer of the image\n" +
			"instead (cosign's OCI 1.1 form: cosign verify --experimental-oci11 finds it).",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyPath == "" {
				return errKeyless
			}
			mode, err := sign.ParseMode(modeFlag)
			if err != nil {
				return fmt.Errorf("--registry-referrers-mode %w", err)
			}
			if err := g.checkRegistryFlags(cmd); err != nil {
				return err
			}
			key, err := loadSignKey("--key", keyPath)
			if err != nil {
				return err
			}
			rc := g.registryClient(cmd)
			for _, a := range args {
				ref, err := rc.ParseReference(a)
				if err != nil {
					return err
				}
				d, err := rc.Fetch(cmd.Context(), ref)
				if err != nil {
					return err
				}
				if err := g.signDigest(cmd, key, ref.Context(), d.Descriptor, mode, rc); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "cosign private key file (ENCRYPTED SIGSTORE PRIVATE KEY PEM; password from COSIGN_PASSWORD)")
	cmd.Flags().StringVar(&modeFlag, "registry-referrers-mode", "legacy", referrersModeHelp)
	return cmd
}

func newVerifyCommand(g *globals) *cobra.Command {
	var keyPath string
	cmd := &cobra.Command{
		Use:   "verify --key cosign.pub IMAGE...",
		Short: "Verify images' cosign signatures, as cosign verify --key does",
		Long: "Checks that a signature at the repository's sha256-<digest>.sig tag is made by the\n" +
			"key, signs the digest IMAGE names and names IMAGE's repository; signatures pushed as\n" +
			"OCI 1.1 referrers of the image (cosign's oci-1-1 mode) are checked too. Prints the verified\n" +
			"payloads as a JSON array on stdout, as cosign does; exits 1 when an image has none.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyPath == "" {
				return errKeyless
			}
			if err := g.checkRegistryFlags(cmd); err != nil {
				return err
			}
			data, err := os.ReadFile(keyPath)
			if err != nil {
				return fmt.Errorf("--key: %w", err)
			}
			pub, err := sign.ParsePublicKey(data)
			if err != nil {
				return fmt.Errorf("--key %s: %w", keyPath, err)
			}
			rc := g.registryClient(cmd)
			var payloads []json.RawMessage
			for _, a := range args {
				ref, err := rc.ParseReference(a)
				if err != nil {
					return err
				}
				d, err := rc.Fetch(cmd.Context(), ref)
				if err != nil {
					return err
				}
				vs, err := sign.Verify(cmd.Context(), ref.Context(), d.Digest, []crypto.PublicKey{pub}, sign.IdentityMatcher(ref, repositoryIdentity), rc)
				if err != nil {
					return fmt.Errorf("%s: %w", a, err)
				}
				fmt.Fprintf(g.stderr, "Verification for %s --\nThe signatures were verified against the specified public key (%d)\n", a, len(vs))
				for _, v := range vs {
					payloads = append(payloads, v.Payload)
				}
			}
			out, err := json.Marshal(payloads)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, string(out))
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "cosign public key file (PUBLIC KEY PEM)")
	return cmd
}

// repositoryIdentity is cosign verify's identity rule: the signature names
// the image's repository.
var repositoryIdentity = &policy.SignedIdentity{Type: "matchRepository"}

// loadSignKey opens --sign-key before the build starts and reads
// --sign-referrers-mode.
func (f *buildFlags) loadSignKey(push bool) (crypto.Signer, sign.Mode, error) {
	mode, err := sign.ParseMode(f.signMode)
	if err != nil {
		return nil, mode, fmt.Errorf("--sign-referrers-mode %w", err)
	}
	if f.signKey == "" {
		if f.signMode != "" {
			return nil, mode, errors.New("--sign-referrers-mode says where --sign-key's signature goes: add --sign-key")
		}
		return nil, mode, nil
	}
	if !push {
		return nil, mode, errors.New("--sign-key signs what the build pushes: add --push")
	}
	k, err := loadSignKey("--sign-key", f.signKey)
	return k, mode, err
}

// signPushed signs desc in every repository the build pushed to.
func (g *globals) signPushed(cmd *cobra.Command, key crypto.Signer, mode sign.Mode, desc v1.Descriptor, tags []string) error {
	if key == nil {
		return nil
	}
	rc := g.registryClient(cmd)
	done := map[string]bool{}
	for _, t := range tags {
		ref, err := rc.ParseReference(t)
		if err != nil {
			return err
		}
		if done[ref.Context().Name()] {
			continue
		}
		done[ref.Context().Name()] = true
		if err := g.signDigest(cmd, key, ref.Context(), desc, mode, rc); err != nil {
			return err
		}
	}
	return nil
}
