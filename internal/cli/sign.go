package cli

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/pkg/registry"
	"github.com/kiln-build/kiln/pkg/sign"
)

// errKeyless is the answer to signing or verifying without a key.
var errKeyless = errors.New("keyless signing and verification (Fulcio certificates, Rekor transparency log) are not supported: kiln cannot reach Fulcio or Rekor; use --key with a cosign key pair (cosign generate-key-pair)")

// loadSignKey opens a cosign private key file with $COSIGN_PASSWORD (an
// empty password when it is not set, as cosign's keys may have).
func loadSignKey(flag, path string) (crypto.Signer, error) {
	var k crypto.Signer
	if err := readKey(flag, path, signKeyParser(&k)); err != nil {
		return nil, err
	}
	return k, nil
}

// signKeyParser parses a cosign private key into *k, with
// $COSIGN_PASSWORD.
func signKeyParser(k *crypto.Signer) func(data []byte) error {
	return func(data []byte) (err error) {
		*k, err = sign.ParsePrivateKey(data, []byte(os.Getenv("COSIGN_PASSWORD")))
		return err
	}
}

// readKey reads the key file path that flag names and parses it; errors
// name the flag (and the file, when it does not parse).
func readKey(flag, path string, parse func(data []byte) error) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	if err := parse(data); err != nil {
		return fmt.Errorf("%s %s: %w", flag, path, err)
	}
	return nil
}

// keyedImages is what sign and verify share: --key is required (kiln has
// no keyless mode), the registry flags are checked, the key file is read
// by parse, and each IMAGE is resolved to its manifest and handed to each.
func (g *globals) keyedImages(cmd *cobra.Command, keyPath string, args []string, parse func(data []byte) error,
	each func(rc *registry.Client, arg string, ref name.Reference, d *remote.Descriptor) error) error {
	if keyPath == "" {
		return errKeyless
	}
	if err := g.checkRegistryFlags(cmd); err != nil {
		return err
	}
	if err := readKey("--key", keyPath, parse); err != nil {
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
		if err := each(rc, a, ref, d); err != nil {
			return err
		}
	}
	return nil
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
			mode, err := sign.ParseMode(modeFlag)
			if err != nil {
				return fmt.Errorf("--registry-referrers-mode %w", err)
			}
			var key crypto.Signer
			return g.keyedImages(cmd, keyPath, args, signKeyParser(&key), func(rc *registry.Client, _ string, ref name.Reference, d *remote.Descriptor) error {
				return g.signDigest(cmd, key, ref.Context(), d.Descriptor, mode, rc)
			})
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
			var pub crypto.PublicKey
			parse := func(data []byte) (err error) {
				pub, err = sign.ParsePublicKey(data)
				return err
			}
			var payloads []json.RawMessage
			err := g.keyedImages(cmd, keyPath, args, parse, func(rc *registry.Client, a string, ref name.Reference, d *remote.Descriptor) error {
				vs, err := sign.Verify(cmd.Context(), ref.Context(), d.Digest, []crypto.PublicKey{pub}, nil, rc)
				if err != nil {
					return fmt.Errorf("%s: %w", a, err)
				}
				fmt.Fprintf(g.stderr, "Verification for %s --\nThe signatures were verified against the specified public key (%d)\n", a, len(vs))
				for _, v := range vs {
					payloads = append(payloads, v.Payload)
				}
				return nil
			})
			if err != nil {
				return err
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
